"""Benchmarks, run as ``rankscope bench <name>``: timings printed, not asserted (they are not tests).

Each benchmark module has ``add_parser(subparsers)`` registering its sub-command; :func:`add_bench_parser`
collects them under ``bench``.
"""
from __future__ import annotations

import argparse

from core.bench import (
    allocate,
    attention,
    dashboard,
    language,
    posttrain,
    resample,
    sensitivity,
    speed,
    super_resolution,
    sweep,
)


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``bench`` and its sub-commands to the ``rankscope`` parser's sub-commands."""
    bench = sub.add_parser("bench", help="benchmarks: timings measured in this process, printed")
    kinds = bench.add_subparsers(dest="bench", required=True)
    allocate.add_parser(kinds)
    attention.add_parser(kinds)
    dashboard.add_parser(kinds)
    language.add_parser(kinds)
    posttrain.add_parser(kinds)
    resample.add_parser(kinds)
    speed.add_parser(kinds)
    super_resolution.add_parser(kinds)
    sensitivity.add_parser(kinds)
    sweep.add_parser(kinds)

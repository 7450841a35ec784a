"""The ``rankscope`` command: every sub-command is a thin front end over a ``core`` function.

Sub-commands live by concept: :mod:`.models` (models, layers, groups, profile, train), :mod:`.compress`
(plan, apply, finetune), :mod:`.sweep` (sweep, allocate) and :mod:`core.bench` (``rankscope bench …``).
Errors in the user's input (``RankscopeError``) print one line to stderr and exit with code 2.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from core.bench import add_bench_parser
from core.cli import compress, export, models, sweep
from core.errors import RankscopeError

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="rankscope", description="Low-rank compression with the price measured.")
    sub = parser.add_subparsers(dest="command", required=True)
    for commands in (models, compress, sweep, export):
        commands.add_parsers(sub)
    add_bench_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0, or 2 for bad input)."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except RankscopeError as err:
        print(f"rankscope: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    return 0

"""``rankscope bench allocate`` on a reduced setting: one budget, few images, no recovery."""
from __future__ import annotations

import re

import pytest

from core.cli import main

pytestmark = pytest.mark.slow  # benchmarks: each runs the real measurement end to end


def test_bench_allocate_prints_the_tables_and_the_verdict(tmp_path, capsys):
    assert main(["bench", "allocate", "fmnist-resnet", "--budgets", "0.5", "--samples", "32", "--sweep-samples", "32",
                 "--refine-samples", "16", "--evaluations", "4", "--points", "2", "--recover", "--repeats", "1",
                 "--latency-batch", "2", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"allocate: rankscope beats greedy at [01]/1 budgets", out[-1])
    assert any(line.split()[:1] == ["rankscope-latency"] for line in out)
    assert any(line.split()[:1] == ["0.5"] for line in out)

"""`rankscope bench dashboard` runs and reports both paths; the numbers themselves are not asserted."""
from __future__ import annotations

import pytest

from core.bench.dashboard import bench_model, format_summary, format_table
from core.cli import main

pytestmark = pytest.mark.slow  # benchmarks: each runs the real measurement end to end


def test_bench_rows_time_both_paths():
    rows = bench_model("fmnist-resnet", samples=64, repeats=1)
    assert [r.layer for r in rows] == ["stem.0", "layer2.0.downsample.0", "fc"]
    assert all(r.cached_s > 0 and r.scratch_s > 0 and r.scratch_warm_s > 0 and r.path == "cached" for r in rows)
    assert "fmnist-resnet: rank change -> accuracy" in format_summary(rows)
    assert len(format_table(rows).splitlines()) == 2 + len(rows)


def test_bench_command(capsys):
    assert main(["bench", "dashboard", "fmnist-resnet", "--samples", "32", "--repeats", "1", "--json"]) == 0
    assert '"model": "fmnist-resnet"' in capsys.readouterr().out
    assert main(["bench", "dashboard", "nope", "--samples", "32"]) == 2

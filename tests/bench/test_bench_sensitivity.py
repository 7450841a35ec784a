"""`rankscope bench sensitivity` at its smallest: every step runs and the last line has its form."""
from __future__ import annotations

import math
import re

import pytest

from core.bench.sensitivity import bench_model, format_result


@pytest.mark.slow  # every sweep of the bench, at its smallest: some 5 s here
def test_bench_model_measures_every_sweep_and_the_regrets():
    result = bench_model("fmnist-resnet", points=3, samples=64, held_out=64, stack=3, budgets=(0.5,),
                         proxies=("energy", "fisher"), refine=0, log=lambda _: None)
    assert result.points == 30 and result.samples == 64
    assert set(result.proxies) == {"energy", "fisher"} and result.best in result.proxies
    assert all(-1 <= tau <= 1 for _, tau, _ in result.proxies.values())
    seconds, exact_points = result.hybrid[0.5]
    assert seconds > 0 and 0 < exact_points < 30
    assert {label for label, _ in result.scores} == {"exact", "hybrid", "early stop", "energy", "fisher"}
    assert result.early is not None and result.early[1] == 0  # 64 samples are one batch: no look between batches
    assert math.isfinite(result.regret("hybrid", 0.5)) and result.regret("exact", 0.5) == 0
    table = format_result(result)
    assert re.search(r"hybrid @0.5 +[0-9.]+ +[0-9.]+ +\(\w+, \d+ exact points\)", table)
    assert "batched exact" in table and re.search(r"early stop +[0-9.]+ +[0-9.]+ +\(\d+ points stopped at 5 points", table)
    assert result.held_out == 64 and "(a point's top1 within ±12.2 points at 95 %)" in table  # 1.96 * 0.5 / 8

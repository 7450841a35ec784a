"""The hybrid sweep: a proxy everywhere, exact rows only where an allocation at the budget is decided."""
from __future__ import annotations

import pytest

from core.decompose.rank import rank_text
from core.errors import RankscopeError
from core.sweep import DENSE, PointKey, proxy_table
from core.sweep.allocate import allocate
from core.sweep.budget import Problem, Target
from core.sweep.hybrid import hybrid_table


@pytest.fixture(scope="module")
def predicted(resnet, subset):
    return proxy_table(resnet[0], subset, "fisher", points=5, batch_size=32)


def test_hybrid_scores_some_points_exactly_and_decides_on_them(resnet, subset, table, example, predicted):
    hybrid = hybrid_table(resnet[0], subset, Target("flops", 0.5), example, predicted=predicted, points=5, batch_size=32)
    grid = (table["method"] != DENSE).sum()
    assert len(hybrid) == len(table) and hybrid.attrs["grid_points"] == grid
    scored = {PointKey(*k) for k in hybrid.attrs["exact"]}
    assert hybrid.attrs["exact_points"] == len(scored) < grid
    exact = table.set_index(["layer", "method", "rank"])
    mine = hybrid.set_index(["layer", "method", "rank"])
    for key in scored:  # the exact sweep's own numbers where the hybrid scored exactly
        assert mine.loc[tuple(key), "loss"] == exact.loc[tuple(key), "loss"]
        assert mine.loc[tuple(key), "top1"] == exact.loc[tuple(key), "top1"]
    others = hybrid[(hybrid["method"] != DENSE) & ~hybrid.set_index(["layer", "method", "rank"]).index.isin(
        [tuple(k) for k in scored])]
    assert others["top5"].isna().all() and (others["loss"] >= table["loss"].iloc[0]).all()  # calibrated: slopes >= 0
    allocation = allocate("rankscope", Problem(resnet[0], "", example, Target("flops", 0.5), hybrid))
    assert allocation.met
    if hybrid.attrs["rounds"] < 3:  # the rounds settled: every compressed layer sits at an exactly scored point
        for layer, entry in allocation.plan.layers.items():
            assert PointKey(layer, entry.method, rank_text(entry.rank)) in scored


def test_a_wider_window_scores_more_points(resnet, subset, example, predicted):
    narrow = hybrid_table(resnet[0], subset, Target("flops", 0.5), example, predicted=predicted, points=5, batch_size=32,
                          window=1, rounds=0)
    wide = hybrid_table(resnet[0], subset, Target("flops", 0.5), example, predicted=predicted, points=5, batch_size=32,
                        window=3, rounds=0)
    layers = len(set(narrow.loc[narrow["method"] != DENSE, "layer"]))
    assert narrow.attrs["exact_points"] == layers and wide.attrs["exact_points"] == 3 * layers


def test_bad_hybrid_arguments_are_one_line_errors(resnet, subset, example, predicted):
    with pytest.raises(RankscopeError, match="latency target"):
        hybrid_table(resnet[0], subset, Target("latency", 0.5), example, predicted=predicted)
    with pytest.raises(RankscopeError, match="reads none"):
        hybrid_table(resnet[0], subset, Target("flops", 0.5), example, predicted=predicted, allocator="uniform")
    with pytest.raises(RankscopeError, match="window must be at least 1"):
        hybrid_table(resnet[0], subset, Target("flops", 0.5), example, predicted=predicted, window=0)

"""The sweep engine: the naive sweep's numbers, exact costs, a disk cache that resumes, cancellation."""
from __future__ import annotations

import pandas as pd
import pytest

from core.errors import RankscopeError
from core.profile import Cancelled
from core.sweep import DENSE, MODEL, PointKey, SweepCache, naive_sweep, read_table, sweep, sweep_grid, write_table
from core.sweep.engine import layer_methods

LAYERS = ["layer3.0.conv2", "fc"]


@pytest.mark.slow  # over half a second on the 2-core machine
def test_engine_gives_the_naive_sweeps_numbers_exactly(resnet, subset):
    model, _ = resnet
    table = sweep(model, subset, layers=LAYERS, points=3, batch_size=32)
    naive = naive_sweep(model, subset, sweep_grid(model, LAYERS, None, 3), batch_size=32)
    points = table[table["method"] != DENSE].reset_index(drop=True)
    assert list(points["rank"]) == ["1x1", "32x32", "64x64", "1", "6", "10"]
    pd.testing.assert_frame_equal(points[naive.columns], naive, check_exact=True, check_dtype=False)


def test_rows_hold_exact_costs_and_the_baseline(table):
    rows = table.set_index(["layer", "method", "rank"])
    assert rows.loc[(MODEL, DENSE, ""), "params"] == 77754
    assert rows.loc[(MODEL, DENSE, ""), "flops"] == 18691840
    assert rows.loc[("fc", DENSE, ""), ["params", "flops"]].tolist() == [650, 1280]
    assert rows.loc[("fc", "svd", "1"), ["params", "flops"]].tolist() == [84, 148]  # 64 + 10 weights, 10 biases
    # Tucker-2 (32, 32) of a 64->64 3x3 conv without bias at 7x7: 1x1 64->32, 3x3 32->32, 1x1 32->64
    assert rows.loc[("layer3.0.conv2", "tucker2", "32x32"), ["params", "flops"]].tolist() == [
        64 * 32 + 32 * 32 * 9 + 32 * 64, 2 * 49 * (64 * 32 + 32 * 32 * 9 + 32 * 64)]
    dense = table[table["method"] == DENSE]
    assert (dense["top1"] == dense["top1"].iloc[0]).all() and (dense["loss"] == dense["loss"].iloc[0]).all()
    assert table["latency_ms"].isna().all() and table["layer"].nunique() == 11  # the model row and the 10 layers


def test_latency_is_timed_when_asked(resnet, subset):
    timed = sweep(resnet[0], subset, layers=["fc"], points=2, batch_size=32, latency=True, latency_repeats=3)
    assert (timed["latency_ms"] > 0).all() and (timed["latency_batch"] == 1).all() and len(timed) == 4


def test_cache_hit_is_a_read_and_a_new_layer_computes_only_its_rows(resnet, subset, tmp_path):
    model, _ = resnet
    cache = SweepCache("fashion-mnist:64:0", tmp_path)
    calls: list[tuple[int, int]] = []
    first = sweep(model, subset, layers=["fc"], points=3, batch_size=32, cache=cache, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (5, 5)  # model row, fc's dense row, 3 points
    calls.clear()
    again = sweep(model, subset, layers=["fc"], points=3, batch_size=32, cache=cache, progress=lambda d, t: calls.append((d, t)))
    assert calls == []
    pd.testing.assert_frame_equal(first, again, check_exact=True)
    wider = sweep(model, subset, layers=["layer3.0.downsample.0", "fc"], points=3, batch_size=32, cache=cache,
                  progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (4, 4)  # the new layer's dense row and 3 points
    assert len(wider) == 9
    assert sorted(p.name.split("_")[-1] for p in tmp_path.glob("*.csv")) == ["dense.csv", "svd.csv"]


def test_cancel_keeps_the_rows_done_and_resume_finishes(resnet, subset, tmp_path):
    model, _ = resnet
    cache = SweepCache("fashion-mnist:64:0", tmp_path)
    done: list[int] = []
    # cancelled between fc's baseline rows (model and dense, one group) and its 3 points (the next)
    with pytest.raises(Cancelled, match="after 2 of 5 rows"):
        sweep(model, subset, layers=["fc"], points=3, batch_size=32, cache=cache, progress=lambda d, t: done.append(d),
              cancel=lambda: len(done) == 2)
    calls: list[tuple[int, int]] = []
    resumed = sweep(model, subset, layers=["fc"], points=3, batch_size=32, cache=cache, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (3, 3)
    pd.testing.assert_frame_equal(resumed, sweep(model, subset, layers=["fc"], points=3, batch_size=32), check_exact=True)


def test_table_file_round_trip_is_exact(table, tmp_path):
    write_table(table, tmp_path / "t.csv")
    pd.testing.assert_frame_equal(read_table(tmp_path / "t.csv"), table, check_exact=True, check_dtype=False)


def test_layers_and_methods_are_checked(resnet):
    model, _ = resnet
    assert layer_methods(model, ["fc", "stem.0"], ["svd", "tucker2"]) == {"stem.0": ["svd", "tucker2"], "fc": ["svd"]}
    assert layer_methods(model)["layer2.0.downsample.0"] == ["svd"]
    with pytest.raises(RankscopeError, match=r"no layer named 'fcc' .*did you mean: fc"):
        layer_methods(model, ["fcc"])
    with pytest.raises(RankscopeError, match="aa_svd is data-aware"):
        layer_methods(model, ["fc"], ["aa_svd"])
    with pytest.raises(RankscopeError, match="fc: no given data-free method applies"):
        layer_methods(model, ["fc"], ["tucker2"])


def test_the_batched_sweep_equals_the_plain_one_bit_for_bit(resnet, subset, table):
    for stack in (2, 5):
        batched = sweep(resnet[0], subset, points=5, batch_size=32, stack=stack)
        pd.testing.assert_frame_equal(batched, table, check_exact=True)


def test_a_selected_sweep_scores_only_its_points_and_the_same_numbers(resnet, subset, table):
    points = table[table["method"] != DENSE]
    chosen = points.iloc[[0, 3, 7, 12]]
    keys = {PointKey(r.layer, r.method, r.rank) for r in chosen.itertuples()}
    selected = sweep(resnet[0], subset, points=5, batch_size=32, select=keys)
    got = selected[selected["method"] != DENSE]
    assert {PointKey(r.layer, r.method, r.rank) for r in got.itertuples()} == keys
    assert set(selected.loc[selected["method"] == DENSE, "layer"]) == {""} | set(chosen["layer"])
    merged = got.merge(points, on=["layer", "method", "rank"], suffixes=("", "_full"))
    assert (merged["loss"] == merged["loss_full"]).all() and (merged["top1"] == merged["top1_full"]).all()
    with pytest.raises(RankscopeError, match="none of the selected points"):
        sweep(resnet[0], subset, points=5, select={PointKey("fc", "svd", "999")})

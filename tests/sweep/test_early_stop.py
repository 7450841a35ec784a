"""The early-stopped exact sweep: a point surely too far below the dense model stops early, every other is exact."""
from __future__ import annotations

import pytest

from core.data import eval_subset, load_dataset
from core.errors import RankscopeError
from core.evaluate.cached import LayerEvaluator
from core.sweep import DENSE, SweepCache, sweep
from core.plan import weights_hash
from core.sweep.interval import EarlyStop
from core.task import ClassificationTask, Scores

LAYERS = ["layer3.0.conv2", "fc"]
STOP = EarlyStop(0.05)


def _scores(top1: float, samples: int, higher_is_better: bool = True) -> Scores:
    return Scores("classification", {"top1": top1}, "top1", higher_is_better, 1.0, samples)


def test_a_point_stops_only_when_its_gap_clears_the_drop_and_the_interval():
    # 3 looks at 95 %: z = 2.394; after 256 samples the paired drop is known to ±2.394 / 16 = ±0.150
    assert STOP.decided(_scores(0.30, 256), 0.93, checks=3)  # 0.63 - 0.150 > 0.05
    assert not STOP.decided(_scores(0.75, 256), 0.93, checks=3)  # 0.18 - 0.150 < 0.05
    assert STOP.decided(_scores(0.75, 4096), 0.93, checks=3)  # 0.18 - 0.037 > 0.05
    assert STOP.decided(_scores(0.60, 256), 0.93, checks=3)  # 0.33 - 0.150 > 0.05
    assert not STOP.decided(_scores(0.60, 256), 0.93, checks=100_000)  # more looks, wider: z = 5.03, 0.33 - 0.314
    assert STOP.decided(_scores(0.93, 256, higher_is_better=False), 0.30, checks=3)  # an error metric rose
    with pytest.raises(RankscopeError, match="drop must be a fraction"):
        EarlyStop(0.0)


def test_the_evaluator_returns_the_batches_scored_when_told_to_stop(resnet, subset):
    evaluator = LayerEvaluator(resnet[0], subset, batch_size=16)  # 4 batches
    seen: list[int] = []
    partial = evaluator.evaluate(stop=lambda s: seen.append(s.samples) or s.samples >= 32)
    assert seen == [16, 32] and partial.samples == 32
    seen.clear()
    assert evaluator.evaluate(stop=lambda s: seen.append(s.samples) or False).samples == 64
    assert seen == [16, 32, 48]  # never after the last batch


@pytest.fixture(scope="module")
def larger(resnet):
    return eval_subset(load_dataset("fashion-mnist", resnet[1]), 600)


@pytest.mark.slow  # two sweeps of 600 images
def test_stopped_points_were_far_below_and_the_others_are_exact(resnet, larger, tmp_path):
    model, _ = resnet
    plain = sweep(model, larger, layers=LAYERS, points=5, batch_size=100)
    cache = SweepCache("fashion-mnist:600:0", tmp_path)
    early = sweep(model, larger, layers=LAYERS, points=5, batch_size=100, early_stop=STOP, cache=cache)
    stopped = (early["samples"] < 600).to_numpy()
    assert stopped.any() and (early.loc[stopped, "method"] != DENSE).all()
    assert early[~stopped].equals(plain[~stopped])  # bit for bit
    dense = plain["top1"].iloc[0]
    assert (plain.loc[stopped, "top1"] < dense - STOP.drop).all()  # each was as far below on all 600 images
    cached = cache.load(weights_hash(model), ClassificationTask(), ["svd", "tucker2", DENSE])
    assert len(cached) == (~stopped).sum()  # the stopped rows are not cached: a plain sweep would recompute them


def test_early_stop_needs_a_share_headline_and_one_point_a_pass(resnet, subset):
    with pytest.raises(RankscopeError, match="leave out stack"):
        sweep(resnet[0], subset, layers=["fc"], points=2, stack=2, early_stop=STOP)

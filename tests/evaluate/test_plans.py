"""PlanEvaluator: one call scores any plan, from cached activations where exact, on the built model otherwise."""
from __future__ import annotations

import pytest

from core.data import eval_subset, labelled_batch, load_dataset
from core.evaluate import PlanEvaluator
from core.models import create_model
from core.plan import LayerEntry, Plan, compress
from core.profile import evaluate


@pytest.fixture(scope="module")
def scorer():
    model, cfg = create_model("fmnist-resnet")
    data = eval_subset(load_dataset("fashion-mnist", cfg), 300)
    return PlanEvaluator(model, cfg, data, data=labelled_batch("fashion-mnist", cfg, samples=64))


def test_decomposition_plan_from_cache_equals_the_built_model(scorer):
    plan = Plan("fmnist-resnet", {"layer2.0.conv2": LayerEntry("tucker2", (8, 8)), "fc": LayerEntry("aa_svd", 4)})
    assert PlanEvaluator.is_exact_from_cache(plan)
    cached = scorer.evaluate(plan)
    built = evaluate(compress(scorer.model, scorer.cfg, plan, data=scorer.data)[0], scorer.dataset)
    assert cached["top1"] == built["top1"] and cached.get("top5") == built.get("top5")
    assert cached.loss == pytest.approx(built.loss, rel=1e-5)
    assert scorer.module("fc", LayerEntry("aa_svd", 4)) is scorer.module("fc", LayerEntry("aa_svd", 4))


def test_group_plan_is_built_whole_and_cached_by_plan(scorer):
    plan = Plan("fmnist-resnet", groups={"layer1.0.conv1": LayerEntry("prune", density=0.5)})
    assert not PlanEvaluator.is_exact_from_cache(plan)
    result = scorer.evaluate(plan)
    same = Plan("fmnist-resnet", groups={"layer1.0.conv1": LayerEntry("prune", density=0.5)})
    assert scorer.model_for(same) is scorer.model_for(plan)
    assert result["top1"] == evaluate(scorer.model_for(plan), scorer.dataset)["top1"]
    assert result.samples == 300


def test_empty_plan_scores_the_dense_model(scorer):
    assert scorer.evaluate(Plan("fmnist-resnet"))["top1"] == evaluate(scorer.model, scorer.dataset)["top1"]

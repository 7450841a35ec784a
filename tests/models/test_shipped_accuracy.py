"""The shipped models reach their promised top-1 on the full 10,000-image Fashion-MNIST test split."""
from __future__ import annotations

import pytest
import torch

from core.data import load_dataset
from core.models import create_model
from core.plan import apply_plan, load_plan
from core.paths import ASSETS
from core.profile import evaluate
from core.profile.counts import count_flops

pytestmark = pytest.mark.slow  # the full 10,000-image test split per shipped model


@pytest.mark.parametrize("name,floor", [("fmnist-resnet", 0.920), ("fmnist-vit", 0.880), ("fmnist-capsnet", 0.890),
                                        ("fmnist-resnet-integral", 0.910)])
def test_full_test_split_accuracy(name, floor):
    model, cfg = create_model(name)
    result = evaluate(model, load_dataset("fashion-mnist", cfg), batch_size=500)
    assert result.samples == 10000
    assert result["top1"] >= floor
    assert abs(result["top1"] - cfg.card["test_accuracy"]) < 5e-4  # the card says what the weights do


def test_example_tucker2_plan_halves_the_flops():
    model, cfg = create_model("fmnist-resnet")
    compressed, report = apply_plan(model, load_plan(ASSETS / "plans" / "fmnist-resnet-tucker2-half.yaml"))
    x = torch.zeros(1, *cfg.input_size)
    ratio = count_flops(compressed, x).total / count_flops(model, x).total
    assert len(report.applied) == 6 and 0.40 < ratio < 0.55


def test_integral_model_resampled_keeps_what_its_card_says():
    """Every channel group resampled at 0.7 in the trained order: the card's full-split accuracy, far above the
    plain model resampled the same way."""
    from core.plan import LayerEntry, Plan
    from core.profile import example_input
    from core.resample import channel_groups

    test = load_dataset("fashion-mnist", create_model("fmnist-resnet")[1])
    scores = {}
    for name, order in (("fmnist-resnet-integral", False), ("fmnist-resnet", True)):
        model, cfg = create_model(name)
        example = example_input(cfg, 1)
        entry = LayerEntry("resample", density=0.7, options={"order": order})
        narrowed, _ = apply_plan(model, Plan(name, groups={g: entry for g in channel_groups(model, example)}), example=example)
        scores[name] = evaluate(narrowed, test, batch_size=500)["top1"]
    assert abs(scores["fmnist-resnet-integral"] - create_model("fmnist-resnet-integral")[1].card["resampled_test_accuracy"]["0.7"]) < 5e-4
    assert scores["fmnist-resnet-integral"] > scores["fmnist-resnet"] + 0.3

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


@pytest.mark.parametrize("name,floor", [("fmnist-resnet", 0.920), ("fmnist-vit", 0.880), ("fmnist-capsnet", 0.890)])
def test_full_test_split_accuracy(name, floor):
    model, cfg = create_model(name)
    result = evaluate(model, load_dataset("fashion-mnist", cfg), batch_size=500)
    assert result.samples == 10000
    assert result.top1 >= floor
    assert abs(result.top1 - cfg.card["test_accuracy"]) < 5e-4  # the card says what the weights do


def test_example_tucker2_plan_halves_the_flops():
    model, cfg = create_model("fmnist-resnet")
    compressed, report = apply_plan(model, load_plan(ASSETS / "plans" / "fmnist-resnet-tucker2-half.yaml"))
    x = torch.zeros(1, *cfg.input_size)
    ratio = count_flops(compressed, x).total / count_flops(model, x).total
    assert len(report.applied) == 6 and 0.40 < ratio < 0.55

"""Latency-aware allocation on fmnist-resnet: valid densities that meet the FLOP target of the reference plan."""
from __future__ import annotations

import pytest

from core.errors import RankscopeError
from core.profile.counts import count_flops
from core.prune import allocate_latency_aware, prune_model, uniform_densities


@pytest.mark.slow  # latency measured per layer and density
def test_allocation_is_valid_and_meets_the_flop_target(resnet, calibration):
    model, example = resnet
    reference = uniform_densities(model, example, 0.5)
    allocation = allocate_latency_aware(model, example, reference, data=calibration, ladder=(0.75, 0.5, 0.25), repeats=3)
    assert set(allocation.densities) == set(reference)
    assert all(0 < d <= 1 for d in allocation.densities.values())
    assert allocation.target_flops == count_flops(prune_model(model, example, reference)[0], example).total
    pruned, report = prune_model(model, example, allocation.densities)
    assert count_flops(pruned, example).total == allocation.flops <= allocation.target_flops
    assert allocation.steps and all(s.group in reference for s in allocation.steps)
    assert report.params_after < report.params_before


@pytest.mark.slow  # latency measured per layer and density
def test_pruned_at_the_allocated_densities_meets_the_target(resnet, calibration):
    model, example = resnet
    reference = {"layer3.0.conv1": 0.5, "layer3.0.downsample.0": 0.5}
    allocation = allocate_latency_aware(model, example, reference, data=calibration)
    pruned, report = prune_model(model, example, allocation.densities)
    assert set(report.densities) == set(reference)
    assert report.densities == allocation.densities
    assert count_flops(pruned, example).total <= count_flops(prune_model(model, example, reference)[0], example).total


def test_latency_aware_needs_data(resnet):
    model, example = resnet
    with pytest.raises(RankscopeError, match="pass data="):
        allocate_latency_aware(model, example, {"stem.0": 0.5})

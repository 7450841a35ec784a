"""Tallies and losses on the device under test (``$RANKSCOPE_TEST_DEVICE``) give the CPU's numbers."""
from __future__ import annotations

import pytest
import torch

from core.task import get_task


@pytest.mark.parametrize("name", ["classification", "fidelity"])
def test_device_tally_and_loss_match_the_cpu(name, device):
    gen = torch.Generator().manual_seed(0)
    reference = torch.randn(64, 100, generator=gen)
    outputs = reference + torch.randn(64, 100, generator=gen)
    labels = torch.randint(0, 100, (64,), generator=gen)
    task = get_task(name)
    results, losses = [], []
    for dev in (torch.device("cpu"), device):
        tally = task.tally()
        tally.add(outputs.to(dev), labels.to(dev), reference.to(dev))
        results.append(tally.result())
        losses.append(float(task.loss(outputs.to(dev), labels.to(dev), reference.to(dev))))
    assert results[1] == pytest.approx(results[0], rel=1e-5) and losses[1] == pytest.approx(losses[0], rel=1e-5)

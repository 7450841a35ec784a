"""Tallies and losses on the device under test (``$RANKSCOPE_TEST_DEVICE``) give the CPU's numbers."""
from __future__ import annotations

import pytest
import torch

from core.task import get_task


def logits(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(outputs, labels, reference outputs) of 64 samples and 100 classes."""
    reference = torch.randn(64, 100, generator=gen)
    return reference + torch.randn(64, 100, generator=gen), torch.randint(0, 100, (64,), generator=gen), reference


def images(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(outputs, HR targets, reference outputs) of two 24 x 24 RGB images; the targets serve as the reference."""
    hr = torch.rand(2, 3, 24, 24, generator=gen)
    return (hr + 0.05 * torch.randn(2, 3, 24, 24, generator=gen)).clamp(0, 1), hr, hr


@pytest.mark.parametrize(("name", "batch"), [("classification", logits), ("fidelity", logits),
                                             ("super-resolution-x2", images), ("super-resolution-fidelity-x2", images)])
def test_device_tally_and_loss_match_the_cpu(name, batch, device):
    outputs, labels, reference = batch(torch.Generator().manual_seed(0))
    task = get_task(name)
    results, losses = [], []
    for dev in (torch.device("cpu"), device):
        tally = task.tally()
        tally.add(outputs.to(dev), labels.to(dev), reference.to(dev))
        results.append(tally.result())
        losses.append(float(task.loss(outputs.to(dev), labels.to(dev), reference.to(dev))))
    assert results[1] == pytest.approx(results[0], rel=1e-5) and losses[1] == pytest.approx(losses[0], rel=1e-5)

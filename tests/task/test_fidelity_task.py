"""The fidelity task: hand-computed agreement / top-5 overlap / KL / relative error, streaming, identity, errors."""
from __future__ import annotations

import math

import pytest
import torch

from core.errors import RankscopeError
from core.task import get_task

TASK = get_task("fidelity")
DESCENDING = torch.tensor([6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0])  # 7 classes, logit of class i is 6 - i
NO_LABELS = torch.full((2,), -1)


def test_hand_computed_case():
    # Sample 0: the compressed logits equal the original's. Sample 1: they are reversed (class i gets i).
    reference = DESCENDING.repeat(2, 1)
    outputs = torch.stack([DESCENDING, DESCENDING.flip(0)])
    tally = TASK.tally()
    tally.add(outputs, NO_LABELS, reference)
    result = tally.result()
    # Top-1: class 0 both for sample 0; class 0 vs class 6 for sample 1.
    assert result["agreement"] == 0.5
    # Top-5 sets of sample 1: {0,1,2,3,4} and {6,5,4,3,2} share {2,3,4}: (5/5 + 3/5) / 2.
    assert result["top5_overlap"] == pytest.approx(0.8)
    # KL of sample 1: both logsumexps are equal, so KL = sum_i p_i (r_i - o_i) = sum_i p_i (6 - 2i), p_i = e^-i / Z.
    z = sum(math.exp(-i) for i in range(7))
    assert result["kl"] == pytest.approx(sum(math.exp(-i) / z * (6 - 2 * i) for i in range(7)) / 2)
    # Pooled: the difference of sample 1 is (-6, -4, -2, 0, 2, 4, 6), 112 squared; the original's squares sum
    # to 2 * 91. (The mean of per-sample ratios would be sqrt(112 / 91) / 2 instead.)
    assert result["relative_error"] == pytest.approx(math.sqrt(112 / 182))
    assert tally.seen == 2


def test_loss_is_the_mean_kl_and_leaves_the_reference_alone():
    reference = DESCENDING.repeat(2, 1).requires_grad_()
    outputs = torch.stack([DESCENDING, DESCENDING.flip(0)]).requires_grad_()
    tally = TASK.tally()
    tally.add(outputs, NO_LABELS, reference)
    loss = TASK.loss(outputs, NO_LABELS, reference)
    assert float(loss.detach()) == pytest.approx(tally.result()["kl"])
    loss.backward()
    assert outputs.grad is not None and reference.grad is None


def test_streaming_equals_one_batch():
    gen = torch.Generator().manual_seed(0)
    reference = torch.randn(50, 20, generator=gen)
    outputs = reference + 0.5 * torch.randn(50, 20, generator=gen)
    labels = torch.full((50,), -1)
    whole, parts = TASK.tally(), TASK.tally()
    whole.add(outputs, labels, reference)
    for chunk in (slice(0, 1), slice(1, 33), slice(33, 50)):
        parts.add(outputs[chunk], labels[chunk], reference[chunk])
    assert parts.result() == pytest.approx(whole.result()) and parts.seen == 50
    assert 0 < whole.result()["agreement"] < 1  # the noise does change some predictions


def test_identical_outputs_are_perfect():
    reference = torch.randn(16, 10, generator=torch.Generator().manual_seed(2))
    tally = TASK.tally()
    tally.add(reference.clone(), torch.arange(16) % 10, reference)
    assert tally.result() == {"agreement": 1.0, "top5_overlap": 1.0, "kl": 0.0, "relative_error": 0.0}


def test_five_classes_or_fewer_report_no_overlap():
    reference = torch.tensor([[1.0, 0.0, 2.0]])
    tally = TASK.tally()
    tally.add(reference, torch.tensor([-1]), reference)
    assert set(tally.result()) == {"agreement", "kl", "relative_error"}


def test_outputs_that_are_not_logits_like_the_original_are_refused():
    tally = TASK.tally()
    logits = torch.zeros(2, 10)
    with pytest.raises(RankscopeError, match="reference_outputs"):
        tally.add(logits, NO_LABELS)
    with pytest.raises(RankscopeError, match=r"same shape.*\(2, 11\).*\(2, 10\)"):
        tally.add(torch.zeros(2, 11), NO_LABELS, logits)
    with pytest.raises(RankscopeError, match=r"shape \(2, 3, 8, 8\)"):
        tally.add(torch.zeros(2, 3, 8, 8), NO_LABELS, torch.zeros(2, 3, 8, 8))
    with pytest.raises(RankscopeError, match="are a tuple"):
        tally.add((logits,), NO_LABELS, logits)
    with pytest.raises(RankscopeError, match="same shape"):
        TASK.loss(torch.zeros(2, 11), NO_LABELS, logits)
    tally.add(logits, NO_LABELS, logits)
    with pytest.raises(RankscopeError, match="all zero"):
        tally.result()

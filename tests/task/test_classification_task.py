"""The classification task: hand-computed top-1 / top-5 / cross-entropy, and streaming over batches."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from core.errors import RankscopeError
from core.task import get_task

TASK = get_task("classification")
RANKED = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.0, -1.0])  # 7 classes, class k is the (k+1)-th highest
LSE = 5 + math.log(sum(math.exp(-k) for k in range(7)))  # logsumexp of RANKED


def test_hand_computed_case():
    # Labels 0, 4, 5: the first is top-1, the second only fifth highest (a top-5 hit), the third sixth (a miss).
    tally = TASK.tally()
    tally.add(RANKED.repeat(3, 1), torch.tensor([0, 4, 5]))
    result = tally.result()
    assert result["top1"] == pytest.approx(1 / 3) and result["top5"] == pytest.approx(2 / 3)
    # cross-entropy of label k is LSE - RANKED[k] = LSE - (5 - k); labels 0, 4, 5 give a mean of LSE - 2.
    assert result["loss"] == pytest.approx(LSE - 2)
    assert tally.seen == 3
    assert float(TASK.loss(RANKED.repeat(3, 1), torch.tensor([0, 4, 5]))) == pytest.approx(LSE - 2)


def test_five_classes_or_fewer_report_no_top5():
    tally = TASK.tally()
    tally.add(torch.tensor([[2.0, 1.0, 0.0], [2.0, 1.0, 0.0]]), torch.tensor([0, 2]))
    assert set(tally.result()) == {"top1", "loss"} and tally.result()["top1"] == 0.5


def test_streamed_batches_equal_the_whole_set_computed_at_once():
    gen = torch.Generator().manual_seed(0)
    tally, batches = TASK.tally(), []
    for _ in range(3):
        scores, labels = torch.randn(17, 12, generator=gen), torch.randint(0, 12, (17,), generator=gen)
        tally.add(scores, labels)
        batches.append((scores, labels))
    scores, labels = torch.cat([s for s, _ in batches]), torch.cat([y for _, y in batches])
    top5 = (scores.topk(5, dim=1).indices == labels[:, None]).any(dim=1).float().mean()
    result = tally.result()
    assert result["top1"] == int((scores.argmax(1) == labels).sum()) / len(labels)
    assert result["top5"] == pytest.approx(float(top5)) and result["loss"] == pytest.approx(float(F.cross_entropy(scores, labels)))


def test_streaming_equals_one_batch():
    gen = torch.Generator().manual_seed(1)
    scores, labels = torch.randn(40, 9, generator=gen), torch.randint(0, 9, (40,), generator=gen)
    whole, parts = TASK.tally(), TASK.tally()
    whole.add(scores, labels)
    for chunk in (slice(0, 7), slice(7, 30), slice(30, 40)):
        parts.add(scores[chunk], labels[chunk])
    assert parts.result() == pytest.approx(whole.result()) and parts.seen == whole.seen == 40


def test_unlabelled_or_misshapen_inputs_are_refused():
    tally = TASK.tally()
    with pytest.raises(RankscopeError, match="needs labels.*fidelity"):
        tally.add(RANKED.repeat(2, 1), torch.tensor([0, -1]))
    with pytest.raises(RankscopeError, match=r"shape \(2, 7, 1, 1\)"):
        tally.add(RANKED.repeat(2, 1)[:, :, None, None], torch.tensor([0, 1]))
    with pytest.raises(RankscopeError, match="targets of shape"):
        tally.add(RANKED.repeat(2, 1), torch.tensor([0, 1, 2]))
    with pytest.raises(RankscopeError, match="no samples"):
        tally.result()
    with pytest.raises(RankscopeError, match="needs labels"):
        TASK.loss(RANKED.repeat(2, 1), torch.tensor([-1, -1]))

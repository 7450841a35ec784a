"""Accuracy and loss of a model with fixed logits on known labels."""
from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import TensorDataset

from core.errors import RankscopeError
from core.profile import Cancelled, evaluate, evaluate_tasks
from tests.profile.helpers import FixedLogits

LOGITS = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]  # ranking: 6 > 5 > 4 > 3 > 2 > 1 > 0
LABELS = [6, 5, 2, 0, 1, 6]


def labelled(labels: list[int]) -> TensorDataset:
    return TensorDataset(torch.zeros(len(labels), 1, 2, 2), torch.tensor(labels))


def test_fixed_logits_give_exact_scores():
    result = evaluate(FixedLogits(LOGITS), labelled(LABELS), batch_size=4)  # batches of 4 and 2
    assert result.samples == 6
    assert result["top1"] == 2 / 6  # labels 6, 6
    assert result.get("top5") == 4 / 6  # also 5 and 2; 0 and 1 are ranked 7th and 6th
    log_sum_exp = math.log(sum(math.exp(v) for v in LOGITS))
    expected_loss = sum(log_sum_exp - LOGITS[y] for y in LABELS) / len(LABELS)
    assert result.loss == pytest.approx(expected_loss, rel=1e-6)


def test_top5_is_none_with_five_classes_or_fewer():
    result = evaluate(FixedLogits([0.0, 2.0, 1.0]), labelled([1, 2, 0, 1]), batch_size=3)
    assert result["top1"] == 0.5
    assert result.get("top5") is None


def test_cancel_stops_between_batches():
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 1  # let the first batch run

    with pytest.raises(Cancelled, match="after 4 of 6 samples"):
        evaluate(FixedLogits(LOGITS), labelled(LABELS), batch_size=4, cancel=cancel)
    assert issubclass(Cancelled, RankscopeError)


def test_empty_dataset_is_an_error():
    with pytest.raises(RankscopeError, match="empty"):
        evaluate(FixedLogits(LOGITS), labelled([]))


def test_several_tasks_from_one_pass_equal_one_task_at_a_time(tiny_net):
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(20, 3, 8, 8), torch.randint(0, 10, (20,)))
    reference = torch.nn.Sequential(tiny_net, torch.nn.Tanh())  # another model with the same outputs' shape
    together = evaluate_tasks(tiny_net, data, ["classification", "fidelity"], reference=reference, batch_size=7)
    apart = [evaluate(tiny_net, data, task=t, reference=reference, batch_size=7) for t in ("classification", "fidelity")]
    assert together == apart
    itself = evaluate_tasks(tiny_net, data, ["fidelity"], reference=tiny_net)[0]  # its own outputs, not run twice
    assert itself["agreement"] == 1.0 and itself.loss == 0.0

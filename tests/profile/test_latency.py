"""Latency against modules that take a known time."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from core.errors import RankscopeError
from core.profile import LatencyResult, ab_latency, measure_latency, measure_layer_latency
from tests.profile.helpers import Sleeper

SLACK_MS = 8.0  # sleep() never returns early; a busy 2-core machine can make it late by a few ms


def test_summary_of_known_samples():
    result = LatencyResult.from_samples([4.0, 1.0, 10.0, 3.0, 2.0], batch_size=1, threads=1, device="cpu")
    assert result.median_ms == 3.0
    assert result.p90_ms == pytest.approx(4.0 + 0.6 * (10.0 - 4.0))  # linear interpolation at rank 0.9 * 4 = 3.6
    assert result.samples_ms == [4.0, 1.0, 10.0, 3.0, 2.0]


def test_sleeping_module_median_is_its_sleep_and_threads_are_restored():
    model = Sleeper(0.010).train()
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        result = measure_latency(model, torch.zeros(3, 4), warmup=2, repeats=10, threads=1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert 10.0 <= result.median_ms <= 10.0 + SLACK_MS
    assert result.p90_ms >= result.median_ms
    assert len(result.samples_ms) == 10 and min(result.samples_ms) >= 10.0
    assert (result.batch_size, result.threads, result.device, result.runtime) == (3, 1, "cpu", "torch")
    assert model.seen == [(1, False, (3, 4))] * 12  # 2 warm-up + 10 timed calls, each on 1 thread in eval mode
    assert model.training


def test_each_layer_is_timed_alone_on_its_captured_input():
    model = nn.Sequential(nn.Linear(4, 6), Sleeper(0.005), Sleeper(0.020))
    results = measure_layer_latency(model, torch.zeros(2, 4), ["2", "1"], warmup=1, repeats=5)
    assert list(results) == ["2", "1"]
    assert 5.0 <= results["1"].median_ms <= 5.0 + SLACK_MS
    assert 20.0 <= results["2"].median_ms <= 20.0 + SLACK_MS
    # one capturing pass of the whole model, then 1 + 5 calls of each module alone, on the Linear's output
    assert [shape for _, _, shape in model[1].seen] == [(2, 6)] * 7
    assert len(model[2].seen) == 7


class SkipsALayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used, self.unused = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.used(x)


def test_layer_latency_rejects_unknown_and_uncalled_modules():
    model = SkipsALayer()
    with pytest.raises(RankscopeError, match="no module named 'usd'.*did you mean: used"):
        measure_layer_latency(model, torch.zeros(1, 4), ["usd"])
    with pytest.raises(RankscopeError, match="unused are not called"):
        measure_layer_latency(model, torch.zeros(1, 4), ["used", "unused"])


def test_latency_rejects_bad_settings(tiny_net):
    with pytest.raises(RankscopeError, match="repeats >= 1"):
        measure_latency(tiny_net, torch.zeros(1, 3, 8, 8), repeats=0)
    with pytest.raises(RankscopeError, match="at least 1, got 0"):
        measure_latency(tiny_net, torch.zeros(1, 3, 8, 8), threads=0)


def test_ab_latency_gives_each_model_its_own_median():
    fast, slow = Sleeper(0.002), Sleeper(0.010)
    fast_ms, slow_ms = ab_latency(fast, slow, torch.zeros(2, 4), repeats=5)
    assert 2.0 <= fast_ms <= 2.0 + SLACK_MS
    assert 10.0 <= slow_ms <= 10.0 + SLACK_MS
    assert len(fast.seen) == len(slow.seen) == 4 + 5  # 4 warm-up calls each, then 5 timed ones

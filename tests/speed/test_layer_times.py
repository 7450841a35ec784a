"""Layer timings: keyed by what decides a kernel's speed (shapes, runtime, batch, threads), kept on disk per machine."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from core.errors import RankscopeError
from core.speed import LayerTimes, fingerprint


def _twins() -> nn.Sequential:
    """Two identical convs (same shape, different weights) and a different one."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(16, 8, 1)).eval()


class Clock:
    """A stub timer that counts its calls and answers the module's parameter count / 1000."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, module: nn.Module, x: torch.Tensor) -> float:
        self.calls += 1
        return sum(p.numel() for p in module.parameters()) / 1000


def test_layers_of_one_shape_share_a_timing_and_other_settings_do_not():
    model, x = _twins(), torch.randn(1, 16, 12, 12)
    times = LayerTimes(model, x, folder=None, timer=Clock())
    assert times.key("0") == times.key("2")  # same type, extra_repr and input shape: weights do not change speed
    assert times.key("0") != times.key("4")
    assert times.key("0", "tucker2", (4, 4)) != times.key("0", "tucker2", (4, 8)) != times.key("0")
    assert times.key("0").startswith("torch|b1|t1|Conv2d(16, 16, kernel_size=(3, 3)")
    other = LayerTimes(model, torch.randn(4, 16, 12, 12), folder=None, timer=Clock())
    assert other.key("0").startswith("torch|b4|") and "|4x16x12x12|" in other.key("0")
    assert times.dense("0") == times.dense("2") == pytest.approx((16 * 16 * 9 + 16) / 1000)
    assert times.timer.calls == 1 and times.measured == 1


def test_timings_persist_per_machine_and_are_read_back(tmp_path):
    model, x = _twins(), torch.randn(1, 16, 12, 12)
    first = LayerTimes(model, x, folder=tmp_path, timer=Clock())
    built = first.of("0", "tucker2", (4, 4))
    first.dense("4")
    first.save()
    saved = json.loads((tmp_path / f"{fingerprint()}.json").read_text())
    assert saved["fingerprint"] == fingerprint() and len(saved["times"]) == 2
    again = LayerTimes(model, x, folder=tmp_path, timer=Clock())
    assert again.of("2", "tucker2", (4, 4)) == built and again.timer.calls == 0  # the twin layer, from disk


def test_a_broken_cache_file_is_named(tmp_path):
    (tmp_path / f"{fingerprint()}.json").write_text("{not json")
    with pytest.raises(RankscopeError, match="not a latency cache"):
        LayerTimes(_twins(), torch.randn(1, 16, 12, 12), folder=tmp_path, timer=Clock())


@pytest.mark.slow  # real timings, two runtimes
@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_real_timers_measure_dense_and_built_layers(runtime):
    times = LayerTimes(_twins(), torch.randn(1, 16, 12, 12), runtime=runtime, repeats=3, folder=None)
    assert times.dense("0") > 0 and times.of("0", "svd", 4) > 0 and times.model_ms() > 0
    assert times.key("0").startswith(f"{runtime}|")

"""ONNX Runtime: export, agreement with torch, latency and memory of the exported model."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from core.errors import RankscopeError
from core.profile import exported_onnx, measure_ort_latency, measure_ort_memory, ort_run, ort_session


class ReturnsText(nn.Module):
    """Nothing ONNX can represent comes out of this forward."""

    def forward(self, x: torch.Tensor) -> str:
        return "not a tensor"


@pytest.mark.slow  # ONNX export and an onnxruntime session
def test_exported_model_matches_torch_and_is_timed(tiny_net):
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with exported_onnx(tiny_net, x) as path:
        out = ort_run(ort_session(path, threads=1), x)
        latency = measure_ort_latency(path, x, warmup=1, repeats=5, threads=1)
        memory = measure_ort_memory(path, x, threads=1)
    assert not path.exists()  # the temporary file is gone with the block
    with torch.inference_mode():
        expected = tiny_net(x).numpy()
    assert out.shape == (2, 10)
    np.testing.assert_allclose(out, expected, atol=1e-4)
    assert 0 < latency.median_ms <= latency.p90_ms
    assert (len(latency.samples_ms), latency.batch_size, latency.threads) == (5, 2, 1)
    assert (latency.runtime, latency.device) == ("onnxruntime", "cpu")
    assert (memory.method, memory.runtime) == ("child-rss", "onnxruntime")
    assert 0 < memory.peak_mb < memory.peak_rss_mb


@pytest.mark.slow  # ONNX export
def test_export_failure_is_one_line_rankscope_error():
    with pytest.raises(RankscopeError, match="could not export ReturnsText to ONNX") as info:
        with exported_onnx(ReturnsText(), torch.zeros(1, 3)):
            pass
    assert "\n" not in str(info.value)

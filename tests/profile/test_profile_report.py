"""profile_model end to end on the tiny net, its settings checks, and the result's keys."""
from __future__ import annotations

import os

import pytest
import torch
from torch.utils.data import Subset, TensorDataset

from core.errors import RankscopeError
from core.profile import count_params, evaluate, model_size_mb, profile_model
from core.profile.report import example_input
from tests.helpers import CONV_FLOPS, LINEAR_FLOPS, TINY_PARAMS

REQUIRED_KEYS = {
    "model", "params", "flops", "flop_convention", "latency_ms", "latency_p90_ms", "peak_memory_mb",
    "memory_method", "model_size_mb", "accuracy", "top5", "loss", "samples", "batch", "threads", "device", "runtime",
}


@pytest.fixture
def tiny_data() -> TensorDataset:
    generator = torch.Generator().manual_seed(2)
    return TensorDataset(torch.randn(10, 3, 8, 8, generator=generator), torch.arange(10) % 10)


@pytest.mark.slow  # memory measured in a spawned child
def test_profile_with_accuracy(tiny_net, tiny_cfg, tiny_data):
    result = profile_model(tiny_net, tiny_cfg, dataset=tiny_data, samples=6, batch=2, threads=1, repeats=3)
    row = result.to_dict()
    assert REQUIRED_KEYS <= set(row)
    assert row["model"] == "tiny"
    assert row["params"] == TINY_PARAMS == count_params(tiny_net)
    assert row["flops"] == CONV_FLOPS + LINEAR_FLOPS  # per sample, whatever the batch
    assert row["model_size_mb"] == model_size_mb(tiny_net)
    assert (row["batch"], row["threads"], row["device"], row["runtime"]) == (2, 1, "cpu", "torch")
    assert 0 < row["latency_ms"] <= row["latency_p90_ms"]
    assert row["memory_method"] == "child-rss" and row["peak_memory_mb"] > 0
    expected = evaluate(tiny_net, Subset(tiny_data, range(6)))
    assert (row["accuracy"], row["top5"], row["loss"], row["samples"]) == (
        expected["top1"], expected.get("top5"), expected.loss, 6
    )


@pytest.mark.slow  # ONNX export, onnxruntime, a spawned child
def test_profile_under_onnxruntime_without_data(tiny_net, tiny_cfg):
    row = profile_model(tiny_net, tiny_cfg, threads=1, runtime="onnxruntime", repeats=3).to_dict()
    assert (row["runtime"], row["memory_method"], row["batch"]) == ("onnxruntime", "child-rss", 1)
    assert row["flops"] == CONV_FLOPS + LINEAR_FLOPS
    assert row["latency_ms"] > 0
    assert (row["accuracy"], row["top5"], row["loss"], row["samples"]) == (None, None, None, 0)


def test_example_input_is_seeded(tiny_cfg):
    assert example_input(tiny_cfg, 3).shape == (3, 3, 8, 8)
    assert torch.equal(example_input(tiny_cfg, 2), example_input(tiny_cfg, 2))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"threads": (os.cpu_count() or 1) + 1},
         f"--threads {(os.cpu_count() or 1) + 1} is larger than this machine's {os.cpu_count() or 1} cores"),
        ({"threads": 0}, "--threads must be at least 1, got 0"),
        ({"batch": 0}, "--batch must be a whole number of at least 1, got 0"),
        ({"runtime": "tensorrt"}, "unknown runtime 'tensorrt'; use one of torch, onnxruntime"),
        ({"device": "tpu"}, "unknown device 'tpu'; use cpu or cuda"),
    ],
)
def test_impossible_settings_are_rankscope_errors(tiny_net, tiny_cfg, settings, message):
    with pytest.raises(RankscopeError) as info:
        profile_model(tiny_net, tiny_cfg, **settings)
    assert str(info.value) == message


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_a_rankscope_error(tiny_net, tiny_cfg):
    with pytest.raises(RankscopeError, match="CUDA is not available here"):
        profile_model(tiny_net, tiny_cfg, device="cuda")

"""Wall-clock latency of a forward pass, for the whole model and for single layers.

On the CPU each call is timed with ``time.perf_counter``; on CUDA with a pair of ``torch.cuda.Event``
around the call and a synchronise, so the GPU's queue is timed, not just the kernel launches.
Warm-up calls run first and are not recorded.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import nn

from core.errors import RankscopeError, close_matches_hint
from core.hooks import first_calls
from core.profile.checks import check_device, check_repeats
from core.profile.context import prepared, torch_threads


@dataclass(frozen=True)
class LatencyResult:
    """Timings of repeated calls, in milliseconds.

    Attributes
    ----------
    median_ms, p90_ms : median and 90th percentile (linear interpolation) of ``samples_ms``.
    samples_ms : one entry per timed call, warm-up excluded.
    batch_size : leading dimension of the input.
    threads : intra-op threads the runtime was given.
    device : ``"cpu"`` or ``"cuda:N"``.
    runtime : ``"torch"`` or ``"onnxruntime"``.
    """

    median_ms: float
    p90_ms: float
    samples_ms: list[float]
    batch_size: int
    threads: int
    device: str
    runtime: str = "torch"

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float], **meta) -> LatencyResult:
        """Summarise ``samples_ms``; ``meta`` gives the remaining fields."""
        samples = [float(s) for s in samples_ms]
        return cls(float(np.median(samples)), float(np.percentile(samples, 90)), samples, **meta)


def time_calls(fn: Callable[[], object], *, warmup: int, repeats: int, device: torch.device) -> list[float]:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times; return each timed call's milliseconds."""
    check_repeats(warmup, repeats)
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        return _time_cuda(fn, repeats, device)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def _time_cuda(fn: Callable[[], object], repeats: int, device: torch.device) -> list[float]:
    """Time each call between two CUDA events recorded on the current stream of ``device``."""
    samples = []
    with torch.cuda.device(device):
        torch.cuda.synchronize()
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end))  # already in ms
    return samples


def measure_latency(
    model: nn.Module,
    example: torch.Tensor,
    *,
    warmup: int = 3,
    repeats: int = 20,
    threads: int | None = None,
    device: str | torch.device = "cpu",
) -> LatencyResult:
    """Time ``model(example)`` under ``torch.inference_mode`` in eval mode.

    Parameters
    ----------
    model : the module; it is moved to ``device`` and put in eval mode for the measurement, then restored.
    example : an input batch; its first dimension is reported as the batch size.
    warmup, repeats : untimed and timed calls.
    threads : ``torch.set_num_threads`` for the measurement (restored afterwards); ``None`` keeps the current count.
    device : ``"cpu"`` or ``"cuda[:N]"``.

    Raises
    ------
    RankscopeError
        Bad thread count, unavailable device, ``repeats < 1``.
    """
    dev = check_device(device)
    with torch_threads(threads) as used, prepared(model, dev), torch.inference_mode():
        x = example.to(dev)
        samples = time_calls(lambda: model(x), warmup=warmup, repeats=repeats, device=dev)
    return LatencyResult.from_samples(samples, batch_size=int(example.shape[0]), threads=used, device=str(dev))


def capture_inputs(model: nn.Module, example: torch.Tensor, module_names: Sequence[str]) -> dict[str, tuple]:
    """Run ``model(example)`` once and return ``{name: (args, kwargs)}`` each named module was first called with.

    Tensors are cloned, so in-place operations later in the forward do not change what was captured.
    """
    modules = dict(model.named_modules())
    for name in module_names:
        if name not in modules:
            raise RankscopeError(f"no module named {name!r} in the model" + close_matches_hint(name, list(modules)))
    captured = first_calls(model, example, module_names)
    missing = [n for n in module_names if n not in captured]
    if missing:
        raise RankscopeError(f"module(s) {', '.join(missing)} are not called in the forward pass, so cannot be timed")
    return captured


def measure_layer_latency(
    model: nn.Module,
    example: torch.Tensor,
    module_names: Sequence[str],
    *,
    warmup: int = 3,
    repeats: int = 20,
    threads: int | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, LatencyResult]:
    """Time each named module's own forward on the input it receives inside ``model(example)``.

    One forward pass captures every named module's input with forward pre-hooks (its first call, if it
    runs more than once); then each module alone is timed on its captured input, like :func:`measure_latency`.

    Parameters
    ----------
    model, example, warmup, repeats, threads, device : as for :func:`measure_latency`.
    module_names : ``named_modules`` paths, e.g. ``["layer1.0.conv1", "fc"]``.

    Returns
    -------
    dict
        ``{name: LatencyResult}`` in the order of ``module_names``.

    Raises
    ------
    RankscopeError
        An unknown name (with close matches), or a module the forward pass never calls.
    """
    dev = check_device(device)
    results: dict[str, LatencyResult] = {}
    with torch_threads(threads) as used, prepared(model, dev), torch.inference_mode():
        inputs = capture_inputs(model, example.to(dev), module_names)
        modules = dict(model.named_modules())
        for name in module_names:
            args, kwargs = inputs[name]
            call = partial(modules[name], *args, **kwargs)
            samples = time_calls(call, warmup=warmup, repeats=repeats, device=dev)
            results[name] = LatencyResult.from_samples(
                samples, batch_size=int(example.shape[0]), threads=used, device=str(dev)
            )
    return results

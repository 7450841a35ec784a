"""Peak memory of one inference forward pass, measured, not estimated.

Three methods, named in :attr:`MemoryResult.method`:

``"child-rss"`` (CPU, the default)
    The model and its input are pickled with ``torch.save`` and sent to a fresh ``spawn`` child process,
    which loads them, resets its peak-RSS counter and runs the forward pass (see :mod:`core.profile.rss`).
    Everything the process touches counts: allocator overhead, oneDNN/OpenMP workspaces, fragmentation.
    Where the kernel's peak counter cannot be reset (no ``/proc/self/clear_refs``) the method is
    ``"child-rss-lifetime"``: the peak over the child's life, an upper bound if loading peaked higher.
``"torch-profiler"`` (CPU fallback, when the model does not pickle or the child cannot load it)
    ``torch.profiler`` with ``profile_memory=True`` records every tensor allocation and free of the forward
    pass in this process; the peak of their running sum is the activation peak. Memory outside tensors
    (workspaces, the allocator's own overhead) is not seen, so this reads lower than ``"child-rss"``.
``"cuda-allocator"`` (CUDA)
    ``torch.cuda.reset_peak_memory_stats`` before and ``torch.cuda.max_memory_allocated`` after the pass.

``"child-rss"`` measures one forward pass from cold, so one-time set-up on the first call (thread pools,
kernel caches) counts, as it would for a process that serves a single request; the in-process methods
do not see set-up the process has already done.

``peak_mb`` is the same quantity for all three: the model's parameters and buffers, the input and the
forward pass's peak. For ``"child-rss"`` it is the measured RSS growth from before the model was loaded;
for the other two, the measured activation peak plus the parameter, buffer and input bytes.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import torch
from torch import nn
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from core.errors import RankscopeError
from core.profile.checks import check_device
from core.profile.context import prepared, torch_threads
from core.profile.counts import model_size_mb
from core.profile.rss import MB, ChildLoadError, ChildPeak, probe_peak, run_in_child

METHODS = ("auto", "child-rss", "torch-profiler")


@dataclass(frozen=True)
class MemoryResult:
    """Peak inference memory, in MB (10^6 bytes).

    Attributes
    ----------
    peak_mb : model (parameters and buffers) + input + the forward pass's peak.
    method : ``"child-rss"`` (or ``"child-rss-lifetime"``), ``"torch-profiler"`` or ``"cuda-allocator"``
        (see the module docstring).
    device : ``"cpu"`` or ``"cuda:N"``.
    peak_activation_mb : growth during the forward pass alone (activations and workspace).
    peak_rss_mb : peak RSS of the whole child process (interpreter, libraries, model, activations);
        ``None`` for the other methods.
    batch_size : leading dimension of the input.
    runtime : ``"torch"`` or ``"onnxruntime"``.
    """

    peak_mb: float
    method: str
    device: str
    peak_activation_mb: float
    peak_rss_mb: float | None
    batch_size: int
    runtime: str = "torch"

    @classmethod
    def from_child(cls, peak: ChildPeak, **meta) -> MemoryResult:
        """Build from a child's RSS readings; ``meta`` gives ``device``, ``batch_size`` and optionally ``runtime``."""
        method = "child-rss" if peak.peak_was_reset else "child-rss-lifetime"
        return cls(peak.inference_mb, method, peak_activation_mb=peak.forward_mb, peak_rss_mb=peak.peak_mb, **meta)


def measure_memory(
    model: nn.Module,
    example: torch.Tensor,
    *,
    threads: int | None = None,
    device: str | torch.device = "cpu",
    method: str = "auto",
) -> MemoryResult:
    """Measure the peak memory of ``model(example)`` under ``torch.inference_mode`` in eval mode.

    Parameters
    ----------
    model : the module (moved to ``device`` and put in eval mode for the measurement, then restored).
    example : an input batch.
    threads : intra-op threads for the forward pass (also in the child); ``None`` keeps the current count.
    device : ``"cpu"`` or ``"cuda[:N]"``; CUDA always uses ``"cuda-allocator"``.
    method : on the CPU, ``"auto"`` tries ``"child-rss"`` and falls back to ``"torch-profiler"`` if the
        model cannot be sent to a child; either can be asked for by name (``"child-rss"`` then raises
        instead of falling back).

    Raises
    ------
    RankscopeError
        Bad thread count or device, an unknown ``method``, ``"child-rss"`` for a model that cannot be
        sent to a child, or a child process that died.
    """
    dev = check_device(device)
    if method not in METHODS:
        raise RankscopeError(f"unknown memory method {method!r}; use one of {', '.join(METHODS)}")
    meta = {"device": str(dev), "batch_size": int(example.shape[0])}
    with torch_threads(threads) as used, prepared(model, dev):
        x = example.to(dev)
        if dev.type == "cpu" and method != "torch-profiler":
            peak = _child_peak(model, x, used)
            if peak is not None:
                return MemoryResult.from_child(peak, **meta)
            if method == "child-rss":
                raise RankscopeError(
                    f"{type(model).__name__} cannot be sent to a child process (it does not pickle or load there); "
                    "use method 'auto' or 'torch-profiler'"
                )
        if dev.type == "cuda":
            name, activation = "cuda-allocator", _cuda_forward_peak_mb(model, x, dev)
        else:
            name, activation = "torch-profiler", _profiler_forward_peak_mb(model, x)
    resident = model_size_mb(model) + x.numel() * x.element_size() / MB
    return MemoryResult(resident + activation, name, peak_activation_mb=activation, peak_rss_mb=None, **meta)


def _child_peak(model: nn.Module, x: torch.Tensor, threads: int) -> ChildPeak | None:
    """Measure in a child process; ``None`` when the model cannot be pickled or loaded there."""
    buffer = io.BytesIO()
    try:
        torch.save((model, x), buffer)
    except Exception:  # local classes, lambdas, open handles: whatever pickle refuses
        return None
    imports = sorted({type(m).__module__ for m in model.modules()})
    try:
        return run_in_child(_forward_in_child, buffer.getvalue(), imports, threads)
    except ChildLoadError:
        return None


def _forward_in_child(payload: bytes, imports: list[str], threads: int) -> ChildPeak:
    """Runs in the child: load ``(model, input)`` from ``payload`` and measure one forward pass."""
    torch.set_num_threads(threads)

    def load() -> tuple[nn.Module, torch.Tensor]:
        return torch.load(io.BytesIO(payload), weights_only=False)  # our own bytes, written just before

    def run(state: tuple[nn.Module, torch.Tensor]) -> None:
        model, x = state
        with torch.inference_mode():
            model(x)

    return probe_peak(load, run, imports)


def _profiler_forward_peak_mb(model: nn.Module, x: torch.Tensor) -> float:
    """Peak of the running sum of CPU tensor allocations and frees recorded by ``torch.profiler``."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof, torch.inference_mode():
        model(x)
    records = [
        e for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == DeviceType.CPU
    ]
    running = peak = 0
    for record in sorted(records, key=lambda e: e.start_ns()):
        running += record.nbytes()  # negative for a free
        peak = max(peak, running)
    return peak / MB


def _cuda_forward_peak_mb(model: nn.Module, x: torch.Tensor, device: torch.device) -> float:
    """``max_memory_allocated`` during the pass, less what was allocated before it."""
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode():
        model(x)
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / MB

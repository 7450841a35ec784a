"""Validation of the settings a profile runs under: threads, batch, device, runtime.

Each check raises :class:`~core.errors.RankscopeError` naming the bad value and what was expected,
so front ends can show it as one line.
"""
from __future__ import annotations

import os

import torch

from core.errors import RankscopeError

RUNTIMES = ("torch", "onnxruntime")


def resolve_threads(threads: int | None) -> int:
    """Return ``threads``, checked to lie in ``1..os.cpu_count()``, or torch's current count when ``None``."""
    if threads is None:
        return torch.get_num_threads()
    cores = os.cpu_count() or 1
    if threads < 1:
        raise RankscopeError(f"--threads must be at least 1, got {threads}")
    if threads > cores:
        raise RankscopeError(f"--threads {threads} is larger than this machine's {cores} cores")
    return int(threads)


def check_batch(batch: int) -> int:
    """Return ``batch`` if it is a positive integer."""
    if int(batch) != batch or batch < 1:
        raise RankscopeError(f"--batch must be a whole number of at least 1, got {batch}")
    return int(batch)


def check_repeats(warmup: int, repeats: int) -> None:
    """Timing needs at least one repeat and no negative warm-up."""
    if repeats < 1 or warmup < 0:
        raise RankscopeError(f"timing needs repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")


def check_device(device: str | torch.device) -> torch.device:
    """Parse ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; CUDA must be available."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise RankscopeError(f"unknown device {device!r}; use cpu or cuda") from err
    if dev.type not in ("cpu", "cuda"):
        raise RankscopeError(f"device {device!r} is not supported; use cpu or cuda")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RankscopeError(f"device {device!r} was asked for but CUDA is not available here; use --device cpu")
    return dev


def check_runtime(runtime: str, device: torch.device) -> str:
    """``runtime`` must be one of :data:`RUNTIMES`; ONNX Runtime is profiled on the CPU only."""
    if runtime not in RUNTIMES:
        raise RankscopeError(f"unknown runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
    if runtime == "onnxruntime" and device.type != "cpu":
        raise RankscopeError("--runtime onnxruntime is profiled on the CPU only; use --device cpu")
    return runtime

"""The same model under ONNX Runtime: export, run, latency and peak memory on the CPU.

What is run is the artifact of :mod:`core.export` (``rankscope export --format onnx``): BatchNorms folded, exported
(:func:`core.export.export_onnx`), then optimised offline by ONNX Runtime. Latency is timed like
:func:`core.profile.latency.measure_latency`; memory is the ``"child-rss"`` method of :mod:`core.profile.memory`,
with the child creating the ``InferenceSession`` from the exported file.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from core.export import exported
from core.profile.checks import resolve_threads
from core.profile.latency import LatencyResult, time_calls
from core.profile.memory import MemoryResult
from core.profile.rss import ChildPeak, probe_peak, run_in_child

if TYPE_CHECKING:
    import onnxruntime

CPU = torch.device("cpu")
__all__ = ["exported_onnx", "measure_ort_latency", "measure_ort_memory", "ort_run", "ort_session"]


@contextmanager
def exported_onnx(model: nn.Module, example: torch.Tensor) -> Iterator[Path]:
    """The path of the ONNX artifact ``rankscope export --format onnx`` would write, in a temporary folder removed
    when the block ends: BatchNorms folded, ONNX Runtime's offline optimisation, checked against PyTorch on
    ``example`` (:func:`core.export.exported`).

    Raises
    ------
    RankscopeError
        The model could not be exported (the layer that fails alone named), or the artifact disagrees with PyTorch.
    """
    with exported(model, example, "onnx") as artifact:
        yield Path(artifact.path)


def ort_session(path: str | Path, threads: int | None = None) -> onnxruntime.InferenceSession:
    """An ``onnxruntime.InferenceSession`` on the CPU with ``threads`` intra-op threads (``None``: torch's count)."""
    import onnxruntime as ort  # imported when used: a child measuring torch memory should not load it

    options = ort.SessionOptions()
    options.intra_op_num_threads = resolve_threads(threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_run(session: onnxruntime.InferenceSession, example: torch.Tensor | np.ndarray) -> np.ndarray:
    """Run ``session`` on one input and return its first output."""
    array = example.detach().cpu().numpy() if isinstance(example, torch.Tensor) else example
    return session.run(None, {session.get_inputs()[0].name: array})[0]


def measure_ort_latency(
    path: str | Path, example: torch.Tensor, *, warmup: int = 3, repeats: int = 20, threads: int | None = None
) -> LatencyResult:
    """Time ``session.run`` of the ONNX file ``path`` on ``example``; ``threads=None`` uses torch's count."""
    used = resolve_threads(threads)
    session = ort_session(path, used)
    feed = {session.get_inputs()[0].name: example.detach().cpu().numpy()}
    samples = time_calls(lambda: session.run(None, feed), warmup=warmup, repeats=repeats, device=CPU)
    return LatencyResult.from_samples(
        samples, batch_size=int(example.shape[0]), threads=used, device="cpu", runtime="onnxruntime"
    )


def measure_ort_memory(path: str | Path, example: torch.Tensor, *, threads: int | None = None) -> MemoryResult:
    """Peak memory of one ``session.run`` in a fresh child process (``"child-rss"``).

    ``peak_mb`` covers the session (weights, arena, planned buffers), the input and the run's peak.
    """
    used = resolve_threads(threads)
    peak = run_in_child(_ort_forward_in_child, str(path), example.detach().cpu().numpy(), used)
    return MemoryResult.from_child(peak, device="cpu", batch_size=int(example.shape[0]), runtime="onnxruntime")


def _ort_forward_in_child(path: str, array: np.ndarray, threads: int) -> ChildPeak:
    """Runs in the child: create the session, copy the input, measure one run."""

    def load() -> tuple:
        return ort_session(path, threads), array.copy()  # the copy makes the input count, as in the torch child

    def run(state: tuple) -> None:
        session, x = state
        ort_run(session, x)

    return probe_peak(load, run)

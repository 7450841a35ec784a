"""Measured latency of each layer, dense or factorized, on the runtime, batch and threads a plan is made for.

A layer is timed alone on the input it receives inside the model (captured once for all layers with
forward pre-hooks, :func:`core.profile.latency.capture_inputs`): the dense module, and the module a
method builds at a rank (data-aware methods calibrate on that input; their timing depends on the
factor shapes only). Under ``onnxruntime`` the module alone is exported to ONNX and its session timed.
Weights do not change a dense kernel's speed, shapes do: a timing is keyed by the runtime, batch,
threads, the module's type and ``extra_repr`` (channels, kernel, stride, padding, groups), its input
shape, the method and the rank, so the repeated blocks of a ResNet are timed once. Timings persist in
``<folder>/<fingerprint>.json`` (one file per :func:`core.speed.machine.fingerprint`), written atomically.
"""
from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from core.decompose.rank import Rank, rank_text
from core.decompose.registry import get_method
from core.errors import RankscopeError
from core.export import export_onnx
from core.io import atomic_write_text
from core.profile.checks import check_runtime, resolve_threads
from core.profile.context import prepared, torch_threads
from core.profile.latency import capture_inputs, time_calls
from core.profile.onnx_runtime import measure_ort_latency
from core.speed.machine import cpu_name, fingerprint

DEFAULT_FOLDER = Path(".rankscope-cache") / "latency"  # relative to the current directory
CPU = torch.device("cpu")
DENSE = "dense"

Timer = Callable[[nn.Module, torch.Tensor], float]
"""``timer(module, x)``: the median milliseconds of ``module(x)``; replaceable in tests."""


def torch_timer(threads: int, repeats: int) -> Timer:
    """Median of ``repeats`` eager calls (3 warm-up) under ``inference_mode`` on ``threads`` threads."""

    def timer(module: nn.Module, x: torch.Tensor) -> float:
        with torch_threads(threads), prepared(module, CPU), torch.inference_mode():
            return float(np.median(time_calls(lambda: module(x), warmup=3, repeats=repeats, device=CPU)))

    return timer


def ort_timer(threads: int, repeats: int) -> Timer:
    """Median of ``repeats`` ONNX Runtime calls of ``module`` exported alone (:func:`core.export.export_onnx`)."""

    def timer(module: nn.Module, x: torch.Tensor) -> float:
        with tempfile.TemporaryDirectory(prefix="rankscope-layer-") as folder:
            path = export_onnx(module, x, Path(folder) / "layer.onnx")
            return measure_ort_latency(path, x, threads=threads, repeats=repeats).median_ms

    return timer


class LayerTimes:
    """Latencies of a model's layers, dense and as methods build them, measured once per machine and kept on disk.

    Parameters
    ----------
    model : the dense model (only read).
    example : a model input at the batch the latencies are for, e.g. :func:`core.profile.example_input`.
    runtime : ``"torch"`` (eager) or ``"onnxruntime"``.
    threads : intra-op threads (``None``: torch's current count).
    repeats : timed calls per measurement.
    folder : where the per-machine file lives; ``None`` keeps timings in memory only.
    timer : measures one module on one input (default by ``runtime``); a test can pass a stub.
    """

    def __init__(self, model: nn.Module, example: torch.Tensor, *, runtime: str = "torch", threads: int | None = None,
                 repeats: int = 15, folder: str | Path | None = DEFAULT_FOLDER, timer: Timer | None = None) -> None:
        self.model, self.example = model, example
        self.runtime = check_runtime(runtime, CPU)
        self.threads, self.batch = resolve_threads(threads), int(example.shape[0])
        self.timer = timer or (torch_timer if runtime == "torch" else ort_timer)(self.threads, repeats)
        self.path = None if folder is None else Path(folder) / f"{fingerprint()}.json"
        self._known: dict[str, float] = self._read()
        self._inputs: dict[str, torch.Tensor] = {}
        self._model_ms: float | None = None
        self.measured = 0  # timings taken in this process (not read from disk)

    def _read(self) -> dict[str, float]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            return {str(k): float(v) for k, v in json.loads(self.path.read_text())["times"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise RankscopeError(f"{self.path}: not a latency cache ({err}); delete it to start afresh") from err

    def save(self) -> None:
        """Write every timing known to the machine's file (a no-op without a folder)."""
        if self.path is not None:
            document = {"fingerprint": fingerprint(), "cpu": cpu_name(), "times": dict(sorted(self._known.items()))}
            atomic_write_text(self.path, json.dumps(document, indent=1) + "\n")

    def prepare(self, layers: Sequence[str]) -> None:
        """Capture the inputs of ``layers`` in one forward pass (later lookups of other layers capture their own)."""
        missing = [layer for layer in dict.fromkeys(layers) if layer not in self._inputs]
        if missing:
            with prepared(self.model, CPU), torch.inference_mode():
                captured = capture_inputs(self.model, self.example, missing)
            self._inputs.update({layer: args[0] for layer, (args, _) in captured.items()})

    def key(self, layer: str, method: str | None = None, rank: Rank | None = None) -> str:
        """The cache key of ``layer`` built by ``method`` at ``rank`` (the dense layer for ``method=None``)."""
        self.prepare([layer])
        module = self.model.get_submodule(layer)
        shape = "x".join(map(str, self._inputs[layer].shape))
        return (f"{self.runtime}|b{self.batch}|t{self.threads}|{type(module).__name__}({module.extra_repr()})|"
                f"{shape}|{method or DENSE}|{rank_text(rank)}")

    def of(self, layer: str, method: str | None = None, rank: Rank | None = None) -> float:
        """Median milliseconds of ``layer`` alone, dense (``method=None``) or as ``method`` builds it at ``rank``."""
        key = self.key(layer, method, rank)
        if key not in self._known:
            module = self.model.get_submodule(layer)
            x = self._inputs[layer]
            if method is not None:
                built = get_method(method)
                calibration = x if built.needs_calibration else None
                module = built.build(module, rank, calibration=calibration).eval()
            self._known[key] = float(self.timer(module, x))
            self.measured += 1
        return self._known[key]

    def dense(self, layer: str) -> float:
        """Median milliseconds of the dense ``layer``."""
        return self.of(layer)

    def table(self, choice: Mapping[str, tuple[str, Rank]]) -> pd.DataFrame:
        """One row per layer of ``choice`` (``{layer: (method, rank)}``): ``name, method, rank, dense_ms, planned_ms``
        and ``saved`` (the share of the dense layer's time the planned one saves; negative when it is slower)."""
        self.prepare(list(choice))
        rows = []
        for layer, (method, rank) in choice.items():
            dense, planned = self.dense(layer), self.of(layer, method, rank)
            rows.append({"name": layer, "method": method, "rank": rank_text(rank), "dense_ms": dense,
                         "planned_ms": planned, "saved": 1 - planned / dense if dense > 0 else 0.0})
        self.save()
        return pd.DataFrame(rows, columns=["name", "method", "rank", "dense_ms", "planned_ms", "saved"])

    def model_ms(self) -> float:
        """Median milliseconds of the whole dense model on ``example`` (measured once per object, not cached on disk:
        it depends on the whole architecture)."""
        if self._model_ms is None:
            self._model_ms = float(self.timer(self.model, self.example))
            self.measured += 1
        return self._model_ms

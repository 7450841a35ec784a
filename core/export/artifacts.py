"""A deployable file from a model: folded, exported, loaded back and checked against PyTorch, then written atomically.

:func:`export_model` checks the format and the destination before any work, folds BatchNorms into a copy
(:mod:`core.export.fold`), writes the artifact in a temporary folder (:mod:`core.export.formats`), runs it on the
verification inputs next to the *unfolded* model, and only then writes ``path`` (:func:`core.io.atomic_write_bytes`):
a failure at any step leaves no file behind and an existing ``path`` as it was. :func:`exported` does the same into a
temporary folder, for timing what ``rankscope export`` would write.

An exporter that fails is retried on each module alone, on the input that module receives in the forward pass
(captured with forward pre-hooks), leaves first in call order, then containers deepest first; the first module that
fails alone is named in the one-line error, with the exporter's message (which names the op).
"""
from __future__ import annotations

import copy
import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.errors import RankscopeError
from core.export.fold import count_batchnorms, fold_model
from core.export.formats import CPU, Format, check_format, first_line
from core.hooks import first_calls
from core.io import atomic_write_bytes, check_writable

# Largest accepted max |artifact - PyTorch|, as a fraction of max(1, max |PyTorch output|).
DEFAULT_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportResult:
    """One verified artifact.

    Attributes
    ----------
    format : the format name (``onnx``, ``torchscript``, ``pt2``).
    path : where the artifact is.
    size_bytes : its size.
    max_abs_diff : max |artifact output - PyTorch output| over the verification inputs (the unfolded model).
    max_rel_diff : ``max_abs_diff`` over max |PyTorch output|.
    tolerance : the check passed: ``max_abs_diff <= tolerance * max(1, max |PyTorch output|)``.
    batch : the batch size the artifact takes (its input shape is fixed by the example).
    samples : how many inputs the check ran on; ``inputs`` says where they came from.
    batchnorms_folded : BatchNorms folded into the layer before them; ``batchnorms_left`` are the others.
    subnormals_flushed : subnormal float32 weights set to zero in the folded copy.
    """

    format: str
    path: str
    size_bytes: int
    max_abs_diff: float
    max_rel_diff: float
    tolerance: float
    batch: int
    samples: int
    inputs: str
    batchnorms_folded: int
    batchnorms_left: int
    subnormals_flushed: int

    def summary(self) -> str:
        """One line: format, path, size, max difference, BatchNorms folded."""
        return (f"{self.format} {self.path} {self.size_bytes / 1e6:.2f} MB; max |diff| {self.max_abs_diff:.2e} "
                f"(rel {self.max_rel_diff:.2e}) on {self.samples} {self.inputs} inputs; "
                f"{self.batchnorms_folded} BatchNorms folded, {self.batchnorms_left} left; "
                f"{self.subnormals_flushed} subnormal weights flushed")


def export_model(
    model: nn.Module,
    example: torch.Tensor,
    path: str | Path,
    fmt: str,
    *,
    fold: bool = True,
    verify_inputs: torch.Tensor | None = None,
    inputs: str = "example",
    tolerance: float = DEFAULT_TOLERANCE,
) -> ExportResult:
    """Export ``model`` to the file ``path`` in format ``fmt``, checked against PyTorch before it is written.

    Parameters
    ----------
    model : the model; it is copied (eval mode, CPU), never changed.
    example : the input the exporter traces on ``(batch, ...)``; the artifact takes exactly this shape.
    path : the file to write; its folder must exist. An existing file is replaced only by a verified artifact.
    fmt : ``"onnx"``, ``"torchscript"`` or ``"pt2"`` (see :mod:`core.export.formats`).
    fold : fold BatchNorms into the layers before them first (:func:`core.export.fold.fold_model`).
    verify_inputs : ``(samples, ...)`` inputs shaped like ``example`` but for the batch, run ``batch`` at a time
        (a remainder short of a batch is left out); ``None`` checks on ``example`` alone.
    inputs : where ``verify_inputs`` came from, recorded in the result (e.g. ``"fashion-mnist"``).
    tolerance : see :class:`ExportResult` (default :data:`DEFAULT_TOLERANCE`).

    Returns
    -------
    ExportResult

    Raises
    ------
    RankscopeError
        An unknown format, a destination that cannot be written (both before any work), a forward that does not
        return one tensor, an exporter failing (the module that fails alone named), or the artifact's outputs
        further from PyTorch's than ``tolerance`` allows (the difference given). Nothing is written then.
    """
    spec = check_format(fmt)
    check_writable(path)
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="rankscope-export-") as folder:
        result = _build(model, example, Path(folder) / f"model{path.suffix or spec.suffix}", spec, fold=fold,
                        verify_inputs=verify_inputs, inputs=inputs, tolerance=tolerance)
        atomic_write_bytes(path, Path(result.path).read_bytes())
    return replace(result, path=str(path))


@contextmanager
def exported(model: nn.Module, example: torch.Tensor, fmt: str = "onnx", **options: Any) -> Iterator[ExportResult]:
    """:func:`export_model` into a temporary folder, removed when the block ends; yields the result.

    ``options`` are :func:`export_model`'s keyword options.
    """
    spec = check_format(fmt)
    with tempfile.TemporaryDirectory(prefix="rankscope-export-") as folder:
        yield _build(model, example, Path(folder) / f"model{spec.suffix}", spec, **options)


def _build(model: nn.Module, example: torch.Tensor, target: Path, spec: Format, *, fold: bool = True,
           verify_inputs: torch.Tensor | None = None, inputs: str = "example",
           tolerance: float = DEFAULT_TOLERANCE) -> ExportResult:
    """Fold, write ``target``, load it back and compare with the unfolded model."""
    reference = copy.deepcopy(model).eval().to(CPU)
    example = example.detach().to(CPU)
    batches = _batches(example, verify_inputs)
    expected = [_forward(reference, x, spec) for x in batches]
    folded = fold_model(reference, example) if fold else None
    exportable = folded.model if folded else reference
    _write(spec, exportable, example, target)
    try:
        run = spec.load(target)
        got = [run(x) for x in batches]
    except Exception as err:
        raise RankscopeError(f"could not run the exported {spec.label} file back: {first_line(err)}") from err
    abs_diff, peak = _difference(got, expected, spec)
    if not abs_diff <= tolerance * max(1.0, peak):  # also catches NaN
        raise RankscopeError(f"the exported {spec.label} model differs from PyTorch by {abs_diff:.3g} (max abs, on "
                             f"{len(batches) * example.shape[0]} {inputs} inputs), more than --tolerance {tolerance:g}"
                             f" x max(1, max |output| = {peak:.3g}); nothing written")
    return ExportResult(
        format=spec.name, path=str(target), size_bytes=target.stat().st_size, max_abs_diff=abs_diff,
        max_rel_diff=abs_diff / peak if peak > 0 else abs_diff, tolerance=tolerance, batch=int(example.shape[0]),
        samples=len(batches) * int(example.shape[0]), inputs=inputs,
        batchnorms_folded=len(folded.folded) if folded else 0, batchnorms_left=count_batchnorms(exportable),
        subnormals_flushed=folded.flushed if folded else 0,
    )


def _batches(example: torch.Tensor, verify_inputs: torch.Tensor | None) -> list[torch.Tensor]:
    if verify_inputs is None:
        return [example]
    if tuple(verify_inputs.shape[1:]) != tuple(example.shape[1:]):
        raise RankscopeError(f"verification inputs of shape {tuple(verify_inputs.shape[1:])} do not match the "
                             f"example's {tuple(example.shape[1:])}")
    batch = example.shape[0]
    whole = verify_inputs.shape[0] // batch * batch
    if whole == 0:
        raise RankscopeError(f"{verify_inputs.shape[0]} verification inputs make no batch of {batch}")
    return list(verify_inputs.detach().to(CPU)[:whole].split(batch))


def _forward(model: nn.Module, x: torch.Tensor, spec: Format) -> torch.Tensor:
    with torch.no_grad():
        out = model(x)
    if not isinstance(out, torch.Tensor):
        raise RankscopeError(f"could not export {type(model).__name__} to {spec.label}: its forward returns "
                             f"{type(out).__name__}, not one tensor")
    return out


def _difference(got: list[torch.Tensor], expected: list[torch.Tensor], spec: Format) -> tuple[float, float]:
    """max |got - expected| (NaN where any output is NaN) and max |expected| over all batches."""
    diffs, peaks = [], []
    for a, b in zip(got, expected):
        if tuple(a.shape) != tuple(b.shape):
            raise RankscopeError(f"the exported {spec.label} model returns shape {tuple(a.shape)}, PyTorch "
                                 f"{tuple(b.shape)}; nothing written")
        diffs.append(float((a.to(b.dtype) - b).abs().max()))
        peaks.append(float(b.abs().max()))
    return (math.nan if any(map(math.isnan, diffs)) else max(diffs)), max(peaks)


def _write(spec: Format, model: nn.Module, example: torch.Tensor, target: Path) -> None:
    """``spec.write``, with the first module that fails alone named when it fails."""
    try:
        spec.write(model, (example,), target)
    except Exception as err:
        target.unlink(missing_ok=True)
        culprit = _culprit(spec, model, example)
        raise RankscopeError(f"could not export {type(model).__name__} to {spec.label}: {culprit or first_line(err)}"
                             ) from err


def _culprit(spec: Format, model: nn.Module, example: torch.Tensor) -> str:
    """``"layer NAME (Type) fails alone: <exporter message>"`` for the first module that fails alone, or ``""``."""
    try:
        captured = _first_inputs(model, example)
    except Exception:  # the forward itself fails; the exporter's message says why
        return ""
    modules = dict(model.named_modules())
    leaves = [n for n in captured if not any(True for _ in modules[n].children())]
    containers = sorted((n for n in captured if n not in leaves), key=lambda n: -n.count("."))
    with tempfile.TemporaryDirectory(prefix="rankscope-probe-") as folder:
        for name in leaves + containers:
            try:
                spec.write(modules[name], captured[name], Path(folder) / f"layer{spec.suffix}")
            except Exception as err:
                return f"layer {name} ({type(modules[name]).__name__}) fails alone: {first_line(err)}"
    return ""


def _first_inputs(model: nn.Module, example: torch.Tensor) -> dict[str, tuple]:
    """``{module path: positional inputs}`` of each submodule's first call in ``model(example)``, in call order.

    Modules called with keyword arguments or non-tensor inputs are left out: a module alone is exported on tensors.
    """
    return {name: args for name, (args, kwargs) in first_calls(model, example).items()
            if not kwargs and args and all(isinstance(a, torch.Tensor) for a in args)}

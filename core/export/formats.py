"""The artifact formats, as a dispatch table: how each writes a model to a file and loads the file back to run it.

``onnx``
    :func:`torch.onnx.export` (the TorchScript-based exporter first, ``dynamo=False``: more robust on small models;
    the ``torch.export``-based one second), then ONNX Runtime's offline optimiser
    (``ORT_ENABLE_EXTENDED``: constant folding, Conv+Add/Mul/activation fusions, some into ONNX Runtime's own
    ``com.microsoft`` ops); the optimised graph is the artifact, so it is meant for ONNX Runtime on the CPU.
``torchscript``
    :func:`torch.jit.trace`, then :func:`torch.jit.freeze` (weights inlined as constants), :func:`torch.jit.save`.
``pt2``
    :func:`torch.export.export` and :func:`torch.export.save`; loaded back with ``torch.export.load(...).module()``.

Every writer traces on the example it is given, so the artifact takes inputs of exactly that shape. Writers take
an eval-mode model on the CPU (:func:`core.export.artifacts.export_model` prepares one) and raise the exporter's
own exception; ``onnxruntime`` is imported only when used.
"""
from __future__ import annotations

import copy
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.errors import RankscopeError

Runner = Callable[[torch.Tensor], torch.Tensor]
CPU = torch.device("cpu")


@dataclass(frozen=True)
class Format:
    """One artifact format.

    Attributes
    ----------
    name : what ``--format`` takes.
    label : how messages name it.
    suffix : the usual file ending.
    write : ``write(model, args, path)`` exports ``model`` traced on ``args`` to ``path``.
    load : ``load(path)`` returns a callable running the artifact on one input tensor.
    """

    name: str
    label: str
    suffix: str
    write: Callable[[nn.Module, tuple, Path], None]
    load: Callable[[Path], Runner]


def export_onnx(model: nn.Module, example: torch.Tensor | tuple, path: str | Path) -> Path:
    """Export an eval-mode CPU copy of ``model`` traced on ``example`` to the ONNX file ``path``, not optimised.

    The graph has fixed input shapes; a single input is named ``"input"``, the first output ``"output"``.
    ``model`` itself is not changed.

    Raises
    ------
    RankscopeError
        Neither exporter could export the model; the message gives the first exporter's error.
    """
    path = Path(path)
    args = tuple(a.detach().to(CPU) for a in (example if isinstance(example, tuple) else (example,)))
    try:
        _onnx_export(copy.deepcopy(model).eval().to(CPU), args, path)
    except Exception as err:
        raise RankscopeError(f"could not export {type(model).__name__} to ONNX: {first_line(err)}") from err
    return path


def optimise_onnx(source: str | Path, target: str | Path) -> Path:
    """Write ONNX Runtime's offline optimisation (``ORT_ENABLE_EXTENDED``, CPU) of the ONNX file ``source`` to
    ``target``."""
    import onnxruntime as ort  # imported when used: a child measuring torch memory should not load it

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(target)
    options.log_severity_level = 3  # errors only
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    return Path(target)


def first_line(err: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _onnx_export(model: nn.Module, args: tuple, path: Path) -> None:
    """Both exporters in turn; the first one's error when both fail."""
    names = {"input_names": ["input"] if len(args) == 1 else [f"input{i}" for i in range(len(args))],
             "output_names": ["output"]}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice, tracer warnings
        try:
            torch.onnx.export(model, args, str(path), dynamo=False, **names)
        except Exception as legacy_error:
            try:
                torch.onnx.export(model, args, str(path), dynamo=True, verbose=False, **names)
            except Exception:
                raise legacy_error from None


def _write_onnx(model: nn.Module, args: tuple, path: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="rankscope-onnx-") as folder:
        raw = Path(folder) / "exported.onnx"
        _onnx_export(model, args, raw)
        optimise_onnx(raw, path)


def _load_onnx(path: Path) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.asarray(session.run(None, {name: x.numpy()})[0]))

    return run


def _write_torchscript(model: nn.Module, args: tuple, path: Path) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings, TorchScript's deprecation notice
        traced = torch.jit.trace(model, args, check_trace=False)
        torch.jit.save(torch.jit.freeze(traced), str(path))


def _load_torchscript(path: Path) -> Runner:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notice
        return _no_grad(torch.jit.load(str(path), map_location="cpu"))


def _write_pt2(model: nn.Module, args: tuple, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(model, args), str(path))


def _load_pt2(path: Path) -> Runner:
    return _no_grad(torch.export.load(str(path)).module())


def _no_grad(module: Callable[[torch.Tensor], torch.Tensor]) -> Runner:
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(x)

    return run


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("onnx", "ONNX", ".onnx", _write_onnx, _load_onnx),
    Format("torchscript", "TorchScript", ".pt", _write_torchscript, _load_torchscript),
    Format("pt2", "torch.export", ".pt2", _write_pt2, _load_pt2),
)}


def check_format(name: str) -> Format:
    """The :class:`Format` called ``name``; a :class:`RankscopeError` naming the known ones otherwise."""
    if name not in FORMATS:
        raise RankscopeError(f"unknown export format {name!r}; use one of {', '.join(FORMATS)}")
    return FORMATS[name]

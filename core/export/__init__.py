"""Deployable artifacts: BatchNorm folding (:mod:`.fold`), the formats (:mod:`.formats`: ONNX optimised by ONNX
Runtime, TorchScript, ``torch.export``) and the verified, atomic export (:mod:`.artifacts`).

Below :mod:`core.profile`, which times the ONNX artifact (``--runtime onnxruntime``): nothing here imports it.

>>> result = export_model(model, example, "model.onnx", "onnx", verify_inputs=batch)  # doctest: +SKIP
"""
from core.export.artifacts import DEFAULT_TOLERANCE, ExportResult, export_model, exported
from core.export.fold import (
    FoldResult,
    count_batchnorms,
    count_subnormals,
    flush_subnormals,
    fold_batchnorm,
    fold_model,
)
from core.export.formats import FORMATS, Format, check_format, export_onnx, optimise_onnx

__all__ = [
    "DEFAULT_TOLERANCE",
    "ExportResult",
    "FORMATS",
    "FoldResult",
    "Format",
    "check_format",
    "count_batchnorms",
    "count_subnormals",
    "export_model",
    "export_onnx",
    "exported",
    "flush_subnormals",
    "fold_batchnorm",
    "fold_model",
    "optimise_onnx",
]

"""The ``export`` sub-command: a deployable file (ONNX, TorchScript, ``torch.export``) of a model, compressed or not.

The artifact is checked against PyTorch on real inputs before it is written: a few samples of the model's own
dataset (or ``--data``), seeded random inputs where the model has none (:func:`core.profile.example_input`).
"""
from __future__ import annotations

import argparse
import math

import torch

from core import argtypes
from core.cli.common import add_model_args, compressed
from core.data import eval_subset, load_dataset
from core.io import check_writable
from core.export import DEFAULT_TOLERANCE, FORMATS, check_format, export_model
from core.models.cfg import ModelCfg
from core.profile import example_input

VERIFY_SAMPLES = 8  # at least this many inputs, in whole batches, are compared with PyTorch


def cmd_export(args: argparse.Namespace) -> None:
    check_format(args.format)  # both before the model is loaded: a typo costs nothing
    check_writable(args.out)
    model, cfg, data_name = compressed(args)
    example, verify, source = verification_inputs(cfg, data_name, args.batch)
    result = export_model(model, example, args.out, args.format, fold=not args.no_fold, verify_inputs=verify,
                          inputs=source, tolerance=args.tolerance)
    print(result.summary())


def verification_inputs(cfg: ModelCfg, data_name: str, batch: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The example to trace on ``(batch, ...)``, the inputs to verify on (whole batches) and where they came from.

    Parameters
    ----------
    cfg : the model's cfg (input size).
    data_name : its dataset (``""``: none, then seeded random inputs).
    batch : the artifact's batch size.

    Returns
    -------
    tuple
        ``(example, inputs, source)``: ``example`` is the first batch of ``inputs``; ``source`` the dataset's name
        or ``"random"``.
    """
    count = batch * math.ceil(VERIFY_SAMPLES / batch)
    if data_name:
        subset = eval_subset(load_dataset(data_name, cfg), count, seed=0)
        whole = len(subset) // batch * batch  # type: ignore[arg-type]
        if whole:
            inputs = torch.stack([subset[i][0] for i in range(whole)])
            return inputs[:batch], inputs, data_name
    inputs = example_input(cfg, count)
    return inputs[:batch], inputs, "random"


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register this module's sub-commands."""
    p = sub.add_parser("export", help="write a deployable ONNX / TorchScript / torch.export file, checked against PyTorch")
    add_model_args(p)
    p.add_argument("--plan", help="compression plan (YAML or JSON) to apply before exporting")
    p.add_argument("--force", action="store_true", help="apply a plan even if it was made for other weights")
    p.add_argument("--data", help="data the artifact is checked on (default: the model's own; random inputs without)")
    p.add_argument("--format", required=True, help=f"artifact format: {', '.join(FORMATS)}")
    p.add_argument("--out", required=True, help="file to write; its folder must exist")
    p.add_argument("--no-fold", action="store_true", help="keep BatchNorms (default: folded into the layer before)")
    p.add_argument("--batch", type=argtypes.positive("--batch"), default=1, help="batch size the artifact takes (default 1)")
    p.add_argument("--tolerance", type=argtypes.fraction("--tolerance"), default=DEFAULT_TOLERANCE,
                   help=f"largest max |difference| from PyTorch, times max(1, max |output|) (default {DEFAULT_TOLERANCE:g})")
    p.set_defaults(func=cmd_export)

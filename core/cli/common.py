"""What every sub-command shares: the model arguments, loading the model, and applying ``--plan`` to it."""
from __future__ import annotations

import argparse
import sys

from torch import nn

from core.data import default_dataset
from core.models import create_model
from core.models.cfg import ModelCfg
from core.plan import compress, load_plan


def add_model_args(p: argparse.ArgumentParser) -> None:
    """The positional model name and the ``--weights`` / ``--arch`` options."""
    p.add_argument("model", help="shipped name (see `rankscope models`), timm:<arch>, torchvision:<arch> or file:<path>")
    p.add_argument("--weights", help="weights file (safetensors or a torch state_dict) for the architecture")
    p.add_argument("--arch", help="architecture of a file:<weights> checkpoint, e.g. fmnist-resnet")


def load_model(args: argparse.Namespace) -> tuple[nn.Module, ModelCfg]:
    """The model the arguments name, and its cfg."""
    return create_model(args.model, weights=args.weights, arch=args.arch)


def compressed(args: argparse.Namespace, loaded: tuple[nn.Module, ModelCfg] | None = None) -> tuple[nn.Module, ModelCfg, str]:
    """The model with ``args.plan`` applied when given (:func:`core.plan.compress`), its cfg, and the data name.

    ``loaded`` is :func:`load_model`'s result when the caller has it already (it is left untouched).
    The report of what the plan did goes to stderr.
    """
    model, cfg = loaded or load_model(args)
    data_name = default_dataset(cfg, args.data)
    if args.plan:
        model, report = compress(model, cfg, load_plan(args.plan), data=data_name or None, force=args.force)
        print(report.summary(), file=sys.stderr)
    return model, cfg, data_name

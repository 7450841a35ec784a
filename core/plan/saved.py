"""A compressed model on disk, both directions: ``model.safetensors`` + ``plan.yaml`` + ``rankscope.json``,
written atomically by :func:`save_compressed`, read back by :func:`load_compressed` (what
``create_model("file:DIR")`` calls: the architecture rebuilt from the plan, then the weights loaded).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from core.errors import RankscopeError
from core.models.cfg import ModelCfg
from core.models.checkpoint import load_weights, read_state_dict
from core.plan.apply import compress
from core.plan.document import Plan, load_plan
from core.posttrain import PostTrain
from core.profile import example_input

META = "rankscope.json"


def check_new_folder(out: Path) -> None:
    """Raise :class:`RankscopeError` unless ``out`` is absent or an empty folder (check before long work)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RankscopeError(f"{out} already exists and is not an empty folder; choose a new --out")


def save_compressed(model: nn.Module, plan: Plan, arch: str, out: Path) -> None:
    """Write ``model`` (already compressed by ``plan``) to the folder ``out``, which must be new or empty.

    Everything is written to a temporary folder beside ``out`` and renamed into place, so ``out``
    is either absent or complete.
    """
    check_new_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        # safetensors refuses shared storage: each tensor is saved as its own contiguous copy.
        state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"))
        (tmp / "plan.yaml").write_text(plan.dumps("yaml"), encoding="utf-8")
        meta = {"arch": arch, "plan": "plan.yaml", "weights": "model.safetensors"}
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_compressed(folder: Path, base: tuple[nn.Module, ModelCfg]) -> tuple[nn.Module, ModelCfg]:
    """The compressed model saved in ``folder``, rebuilt on ``base`` (the dense model and cfg of its ``arch``).

    Only the architecture matters while rebuilding (the saved weights replace every factor and every kept
    channel), so data-aware methods and pruning scores get a seeded random batch, not real data.
    """
    meta = read_meta(folder)
    model, cfg = base
    plan_file = meta.get("plan")
    if plan_file:
        inputs = example_input(cfg, 8)  # seeded images, or token ids for a language model
        labels = torch.arange(8) % max(cfg.num_classes, 1)  # super-resolution models have no classes
        model, _ = compress(model, cfg, architecture_of(load_plan(folder / plan_file)), data=(inputs, labels), force=True)
    load_weights(model, read_state_dict(folder / meta.get("weights", "model.safetensors")), source=str(folder))
    return model.eval(), ModelCfg(**{**cfg.__dict__, "name": f"file:{folder}", "weights": str(folder)})


def architecture_of(plan: Plan) -> Plan:
    """``plan`` with only the post-training steps that change the architecture (bias correction gives layers a bias):
    the saved weights replace whatever the others learnt, so rebuilding need not run them."""
    if plan.posttrain is None:
        return plan
    return replace(plan, posttrain=PostTrain(sequential=False, bias=plan.posttrain.bias, batchnorm="none", reconstruct=0))


def read_meta(folder: Path) -> dict:
    """The folder's ``rankscope.json`` (``arch``, ``plan``, ``weights``).

    Raises
    ------
    RankscopeError
        No such file, or not the JSON object :func:`save_compressed` writes.
    """
    path = folder / META
    if not path.is_file():
        raise RankscopeError(f"{folder} has no {META}; give a weights file and --arch NAME instead")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RankscopeError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("arch"), str):
        raise RankscopeError(f"{path} must be a JSON object naming the architecture ('arch')")
    return meta

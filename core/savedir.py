"""A compressed model on disk: ``model.safetensors`` + ``plan.yaml`` + ``rankscope.json``, written atomically.

``create_model("file:DIR")`` rebuilds the architecture from the plan and loads the weights.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from safetensors.torch import save_file
from torch import nn

from core.errors import RankscopeError
from core.plan import Plan


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
        (tmp / "rankscope.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

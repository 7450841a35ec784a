"""Safe loading of weights files into a model: safetensors, or torch checkpoints with ``weights_only=True``."""
from __future__ import annotations

import pickle
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from core.errors import RankscopeError


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read tensors from a ``.safetensors`` file or a torch checkpoint without running any pickled code.

    A checkpoint that is a dict holding its weights under ``state_dict``, ``model`` or ``model_state_dict``
    is unwrapped; a ``module.`` prefix left by DataParallel is stripped.
    """
    path = Path(path)
    if not path.is_file():
        raise RankscopeError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as err:
            raise RankscopeError(f"cannot read {path} as safetensors: {err}") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "unsupported object"
        raise RankscopeError(
            f"refused to load {path}: it holds Python objects other than tensors, which could run code "
            f"({first}); save a plain state_dict or a safetensors file"
        ) from None
    except Exception as err:
        raise RankscopeError(f"cannot read {path} as a torch checkpoint: {type(err).__name__}: {err}") from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise RankscopeError(f"{path} is not a state_dict (a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load ``state`` into ``model`` strictly; on mismatch name the first offending keys in one line."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in state and state[k].shape != own[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing[:3])}" + (f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""))
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected[:3])}" + (f" (+{len(unexpected) - 3} more)" if len(unexpected) > 3 else ""))
    if wrong:
        problems.append(f"shape mismatch: {', '.join(wrong[:3])}" + (f" (+{len(wrong) - 3} more)" if len(wrong) > 3 else ""))
    if problems:
        raise RankscopeError(f"{source} does not fit the architecture: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)

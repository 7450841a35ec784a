"""What modules receive in a forward pass: the arguments of each one's first call, captured with forward pre-hooks."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack

import torch
from torch import nn
from torch.utils._pytree import tree_map


def _detached_copy(value: object) -> object:
    return value.detach().clone() if isinstance(value, torch.Tensor) else value


def first_calls(model: nn.Module, example: torch.Tensor,
                names: Sequence[str] | None = None) -> dict[str, tuple[tuple, dict]]:
    """``{path: (args, kwargs)}`` of the first call of each named submodule (every submodule for ``None``) in one
    no-grad ``model(example)``, in call order; modules the forward never calls are absent.

    Tensors are cloned, so in-place operations later in the forward do not change what was captured.
    """
    modules = dict(model.named_modules())
    captured: dict[str, tuple[tuple, dict]] = {}

    def hook(name: str) -> Callable[[nn.Module, tuple, dict], None]:
        def record(_module: nn.Module, args: tuple, kwargs: dict) -> None:
            if name not in captured:
                captured[name] = (tree_map(_detached_copy, args), tree_map(_detached_copy, kwargs))

        return record

    with ExitStack() as hooks, torch.no_grad():
        for name in (n for n in modules if n) if names is None else names:
            # a removable handle is a context manager: every hook goes when the block ends
            hooks.enter_context(modules[name].register_forward_pre_hook(hook(name), with_kwargs=True))
        model(example)
    return captured

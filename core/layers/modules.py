"""Reaching into a model by module path: replace a submodule, list the weighted layers, capture layer inputs."""
from __future__ import annotations

import torch
from torch import nn

from core.errors import RankscopeError
from core.hooks import first_calls


def set_module(model: nn.Module, path: str, module: nn.Module) -> None:
    """Put ``module`` in place of ``model``'s submodule at ``path`` (a ``named_modules`` name, not empty).

    ``nn.Module.set_submodule`` does this from torch 2.6 on; the project still admits torch 2.3.
    """
    parent, _, child = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def weighted_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Leaf-most modules that own a weight matrix or tensor a decomposition could act on (incl. capsule ``W``)."""
    out = {}
    for name, module in model.named_modules():
        own = dict(module.named_parameters(recurse=False))
        weight = own.get("weight", own.get("W"))
        if name and weight is not None and weight.dim() >= 2:
            out[name] = module
    return out


def layer_inputs(model: nn.Module, names: list[str], example: torch.Tensor) -> dict[str, torch.Tensor]:
    """The input tensor each named module receives when ``model`` runs on ``example`` (one no-grad pass,
    :func:`core.hooks.first_calls`): its first positional argument, or ``hidden_states`` for a module called with
    keywords only (a transformers ``LlamaAttention``)."""
    return {name: args[0] if args else kwargs["hidden_states"]
            for name, (args, kwargs) in first_calls(model, example, names).items()}


def layer_input(model: nn.Module, path: str, images: torch.Tensor) -> torch.Tensor:
    """The input the module at ``path`` receives when ``model`` runs on ``images`` (one no-grad pass).

    Raises
    ------
    RankscopeError
        The module is not called in the forward pass.
    """
    captured = layer_inputs(model, [path], images)
    if path not in captured:
        raise RankscopeError(f"{path} is not called in the forward pass")
    return captured[path]

"""A model's layers as a table: shape, parameters, FLOPs share and the compression methods that apply."""
from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from core.models.cfg import ModelCfg


def set_module(model: nn.Module, path: str, module: nn.Module) -> None:
    """Put ``module`` in place of ``model``'s submodule at ``path`` (a ``named_modules`` name, not empty).

    ``nn.Module.set_submodule`` does this from torch 2.6 on; the project still admits torch 2.3.
    """
    parent, _, child = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def describe_layers(model: nn.Module, cfg: ModelCfg) -> pd.DataFrame:
    """One row per weighted leaf module: ``name, type, weight_shape, params, flops, flops_share, methods, skipped``.

    ``methods`` lists the decompositions that apply to the layer; ``skipped`` gives the reason when none does.
    """
    from core.decompose.registry import applicable_methods, get_method, list_methods
    from core.profile import layer_table

    table = layer_table(model, cfg)
    modules = dict(model.named_modules())
    methods, skipped = [], []
    for name in table["name"]:
        ok = applicable_methods(modules[name])
        methods.append(ok)
        reasons = {get_method(m).check(modules[name]) for m in list_methods()} - {None}
        skipped.append("" if ok else "; ".join(sorted(reasons))[:120])
    return table.assign(methods=methods, skipped=skipped)


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
    """The input tensor each named module receives when ``model`` runs on ``example`` (one no-grad pass)."""
    modules = dict(model.named_modules())
    seen: dict[str, torch.Tensor] = {}
    hooks = [modules[n].register_forward_pre_hook(lambda _m, a, n=n: seen.setdefault(n, a[0].detach())) for n in names]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return seen

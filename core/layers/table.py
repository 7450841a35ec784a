"""A model's layers as a table: shape, parameters, FLOPs share and the compression methods that apply."""
from __future__ import annotations

import pandas as pd
from torch import nn

from core.decompose.registry import applicable_methods, get_method, list_methods
from core.models.cfg import ModelCfg
from core.profile import layer_table


def describe_layers(model: nn.Module, cfg: ModelCfg) -> pd.DataFrame:
    """One row per weighted leaf module: ``name, type, weight_shape, params, flops, flops_share, methods, skipped``.

    ``methods`` lists the decompositions that apply to the layer; ``skipped`` gives the reason when none does.
    """
    table = layer_table(model, cfg)
    modules = dict(model.named_modules())
    methods, skipped = [], []
    for name in table["name"]:
        ok = applicable_methods(modules[name])
        methods.append(ok)
        reasons = {get_method(m).check(modules[name]) for m in list_methods()} - {None}
        skipped.append("" if ok else "; ".join(sorted(reasons))[:120])
    return table.assign(methods=methods, skipped=skipped)

"""Starting plans: one method on every layer it applies to, each rank chosen by a rule.

The rules are those of :mod:`core.decompose.rank` (energy kept, a cost ratio, VBMF). A layer is left
out of the plan, with the reason recorded in ``plan.skipped``, when the method does not apply to it
or when the chosen rank would not make it cheaper than the dense layer.
"""
from __future__ import annotations

import torch
from torch import nn

from core.decompose.rank import round_rank
from core.decompose.rank_rules import dense_cost, energy_rank, ratio_rank, vbmf_rank
from core.decompose.registry import get_method
from core.errors import RankscopeError
from core.layers import layer_inputs, weighted_layers
from core.models.cfg import ModelCfg
from core.plan.document import Plan, weights_hash
from core.plan.entry import LayerEntry
from core.profile import example_input


def tied_weights(model: nn.Module) -> dict[str, str]:
    """``{path: first path}`` of each module whose weight is the same parameter as an earlier module's (a language
    model's ``lm_head`` tied to its token embedding): factoring one would untie it, so starting plans leave it out."""
    owner: dict[int, str] = {}
    tied: dict[str, str] = {}
    for name, module in weighted_layers(model).items():
        weight = dict(module.named_parameters(recurse=False)).get("weight")
        if weight is None:
            continue
        if id(weight) in owner:
            tied[name] = owner[id(weight)]
        else:
            owner[id(weight)] = name
    return tied


def make_plan(
    model: nn.Module,
    cfg: ModelCfg,
    method: str,
    *,
    energy: float | None = None,
    ratio: float | None = None,
    vbmf: bool = False,
    kind: str = "params",
    calibration: torch.Tensor | None = None,
    multiple: int = 1,
) -> Plan:
    """A plan applying ``method`` to every layer it fits, ranks by exactly one rule.

    Parameters
    ----------
    model, cfg : the model and its metadata (input size for the conv FLOP counts).
    method : a registered decomposition method name.
    energy : keep this fraction of squared singular values.
    ratio : keep this fraction of each layer's ``kind`` ("params" or "flops").
    vbmf : choose ranks by empirical VBMF.
    calibration : model inputs, needed by data-aware methods (their layers' inputs are captured from it).
    multiple : each rank rounded to the nearest multiple of this (:func:`core.decompose.rank.round_rank`; 1: as the
        rule gives it).
    """
    if sum(x is not None and x is not False for x in (energy, ratio, vbmf or None)) != 1:
        raise RankscopeError("choose exactly one rank rule: energy, ratio or vbmf")
    m = get_method(method)
    layers = weighted_layers(model)
    if calibration is not None:
        example = calibration
    else:  # a language model takes token ids (seeded, uniform over its vocabulary), not a float image
        example = example_input(cfg, 1) if cfg.vocab_size else torch.zeros(1, *cfg.input_size)
    inputs = layer_inputs(model, list(layers), example)
    tied = tied_weights(model)
    entries: dict[str, LayerEntry] = {}
    skipped: dict[str, str] = {}
    for name, module in layers.items():
        reason = m.check(module)
        if not reason and name in tied:
            reason = f"its weight is tied to {tied[name]}'s, which factoring would untie (left dense)"
        if name not in inputs:
            reason = "not run by the model's forward pass"
        if reason:
            skipped[name] = reason
            continue
        x = inputs[name]
        hw = tuple(x.shape[-2:]) if x.dim() == 4 else None
        data = x if m.needs_calibration else None
        if energy is not None:
            rank = energy_rank(module, m, energy, data)
        elif ratio is not None:
            rank = ratio_rank(module, m, ratio, kind=kind, input_hw=hw)
        else:
            rank = vbmf_rank(module, m, data)
        rank = round_rank(m, module, rank, multiple)
        cost, dense = getattr(m.cost(module, rank, hw), kind), getattr(dense_cost(module, hw), kind)
        if cost >= dense:
            skipped[name] = f"{method} at rank {rank} would not reduce {kind} ({cost} >= {dense})"
            continue
        entries[name] = LayerEntry(method, rank)
    return Plan(cfg.name, entries, weights_hash(model), skipped)

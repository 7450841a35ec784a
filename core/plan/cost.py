"""Parameters and FLOPs of a plan without building it: each layer's ``method.cost`` where it sits in the model.

A layer's cost depends on where it runs: a conv's FLOPs on its input's spatial size, a Linear's on how
many positions (tokens) it is applied to. :func:`layer_sites` records both in one forward pass at
batch 1; :func:`plan_cost` then prices any plan from the methods' ``cost()`` alone, so a dashboard
slider can show new totals at once. The totals equal :func:`core.profile.count_params` and
:func:`core.profile.count_flops` of the model that :func:`core.plan.apply_plan` builds.
"""
from __future__ import annotations

from contextlib import ExitStack
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import pandas as pd
import torch
from torch import nn

from core.decompose.rank_rules import dense_cost
from core.decompose.registry import Cost, get_method
from core.errors import RankscopeError
from core.plan.document import Plan
from core.plan.entry import LayerEntry
from core.profile import count_flops, count_params


@dataclass(frozen=True)
class Site:
    """Where one layer runs in a forward pass of one sample.

    Attributes
    ----------
    input_hw : spatial size of a conv's input (``None`` for a Linear or capsule layer).
    positions : how many vectors a Linear is applied to per sample (tokens; 1 for a plain classifier
        head), summed over calls if the module runs more than once; 1 for convs and capsule layers.
    calls : times the module runs per forward pass.
    """

    input_hw: tuple[int, int] | None
    positions: int = 1
    calls: int = 1


def layer_sites(model: nn.Module, example: torch.Tensor, names: list[str]) -> dict[str, Site]:
    """Record the :class:`Site` of each named module in one forward pass of ``example`` (a batch of one).

    Raises
    ------
    RankscopeError
        ``example`` is not a batch of one, or a named module never runs.
    """
    if example.shape[0] != 1:
        raise RankscopeError(f"layer_sites needs a batch of one sample, got a batch of {example.shape[0]}")
    modules = dict(model.named_modules())
    seen: dict[str, list[torch.Size]] = {name: [] for name in names}  # input shape of every call
    with ExitStack() as hooks, torch.no_grad():
        for name in names:
            hooks.callback(modules[name].register_forward_pre_hook(partial(_record, seen[name])).remove)
        model(example)
    sites = {}
    for name, shapes in seen.items():
        if not shapes:
            raise RankscopeError(f"{name} is not called in the forward pass, so its cost cannot be placed")
        module = modules[name]
        if isinstance(module, nn.Linear):
            positions = sum(s.numel() // s[-1] for s in shapes)  # leading dims of (1, ..., in_features)
            sites[name] = Site(None, positions, len(shapes))
        elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            if len({tuple(s[-2:]) for s in shapes}) > 1:
                raise RankscopeError(f"{name} runs on inputs of several sizes; its cost cannot be given by one input size")
            sites[name] = Site(tuple(shapes[0][-2:]), len(shapes), len(shapes))
        else:
            sites[name] = Site(None, len(shapes), len(shapes))
    return sites


def _record(shapes: list[torch.Size], _module: nn.Module, args: tuple) -> None:
    shapes.append(args[0].shape)


def entry_cost(module: nn.Module, entry: LayerEntry | None, site: Site) -> Cost:
    """Params and FLOPs (one sample) of a layer as ``entry`` would build it; the dense layer's for ``None``."""
    cost = dense_cost(module, site.input_hw) if entry is None else get_method(entry.method).cost(module, entry.rank, site.input_hw)
    return Cost(cost.params, cost.flops * site.positions)


@dataclass(frozen=True)
class PlanCost:
    """Totals of a planned model next to the dense one, and the per-layer breakdown.

    Attributes
    ----------
    params, flops : the planned model's parameters and FLOPs per sample.
    base_params, base_flops : the dense model's.
    layers : one row per planned decomposition: ``name, method, rank, params_before, params_after, flops_before,
        flops_after``.
    counted : the totals were counted on the built model (:func:`whole_plan_cost` of a plan with attention or
        channel-group entries), not priced from ``cost()``.
    """

    params: int
    flops: int
    base_params: int
    base_flops: int
    layers: pd.DataFrame
    counted: bool = False

    @property
    def params_ratio(self) -> float:
        return self.params / self.base_params if self.base_params else 1.0

    @property
    def flops_ratio(self) -> float:
        return self.flops / self.base_flops if self.base_flops else 1.0


def plan_cost(model: nn.Module, plan: Plan, sites: dict[str, Site], base_params: int, base_flops: int) -> PlanCost:
    """Price ``plan`` on ``model`` from the methods' ``cost()``; nothing is built.

    Parameters
    ----------
    model : the dense model the plan is for.
    plan : the plan; its entries' methods and ranks are checked by ``cost``.
    sites : :func:`layer_sites` of (at least) the plan's layers.
    base_params, base_flops : the dense model's totals (``count_params``, ``count_flops(...).per_sample``).

    Raises
    ------
    RankscopeError
        A layer without a site, an unknown method, a rank out of range.
    """
    rows = []
    for name, entry in plan.layers.items():
        if name not in sites:
            raise RankscopeError(f"{name}: no recorded site (call layer_sites with this layer)")
        module = model.get_submodule(name)
        before, after = entry_cost(module, None, sites[name]), entry_cost(module, entry, sites[name])
        rows.append({"name": name, "method": entry.method, "rank": entry.rank, "params_before": before.params,
                     "params_after": after.params, "flops_before": before.flops, "flops_after": after.flops})
    columns = ["name", "method", "rank", "params_before", "params_after", "flops_before", "flops_after"]
    table = pd.DataFrame(rows, columns=columns)
    params = base_params - int(table["params_before"].sum()) + int(table["params_after"].sum())
    flops = base_flops - int(table["flops_before"].sum()) + int(table["flops_after"].sum())
    return PlanCost(params, flops, base_params, base_flops, table)


def whole_plan_cost(model: nn.Module, plan: Plan, sites: dict[str, Site], base_params: int, base_flops: int,
                    built: Callable[[], nn.Module], example: torch.Tensor) -> PlanCost:
    """The cost of any plan: priced from ``cost()`` when it holds decompositions only, else counted on the built model.

    Attention variants and channel groups change the model around a module (sequence handling, the widths of
    neighbouring layers), which no per-layer formula prices; ``built()`` (called only then) gives the compressed
    model and its parameters and FLOPs are counted on ``example`` (one sample). The per-layer table always
    covers the plan's decomposition entries.
    """
    decompositions = replace(plan, layers={p: e for p, e in plan.layers.items() if e.kind == "decomposition"}, groups={})
    priced = plan_cost(model, decompositions, sites, base_params, base_flops)
    if decompositions == plan:
        return priced
    new = built()
    return PlanCost(count_params(new), int(count_flops(new, example).per_sample), base_params, base_flops, priced.layers, True)

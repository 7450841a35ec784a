"""What an allocator is given (:class:`Problem`), how it prices a choice of ranks (:class:`Costs`), what it returns.

A *choice* maps each compressible layer to a ``(method, rank)`` or to ``None`` (kept dense). Its cost is
the dense model's total minus the dense cost of the changed layers plus their cost as built:

- ``params``, ``flops``: each method's ``cost`` at the layer's site, as :func:`core.plan.cost.plan_cost`
  prices a plan (FLOPs per sample, 1 multiply-add = 2 FLOPs);
- ``latency``: the whole model's measured latency minus the dense layers' measured latencies plus the
  built layers', each measured alone on its real input on the runtime, batch and threads the plan is
  for (:class:`core.speed.LayerTimes`, cached per machine): the rest of the network is assumed to run
  as long as before. An option measured no faster than its dense layer saves nothing, so no allocator
  ever picks it under a latency target (:func:`table_options` drops it; :meth:`Costs.total` prices it
  as dense; :func:`finish` keeps such a layer dense).

Given timings, every allocation also reports the latency it will cost (:attr:`Allocation.latency_ms`),
whatever its target.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pandas as pd
import torch
from torch import nn

from core.decompose.registry import get_method
from core.errors import RankscopeError
from core.plan import LayerEntry, Plan, validate_plan, weights_hash
from core.plan.cost import entry_cost, layer_sites, plan_cost
from core.profile import count_flops, count_params
from core.speed import LayerTimes
from core.sweep.engine import layer_methods
from core.decompose.rank import Rank, parse_rank, rank_text
from core.sweep.table import DENSE, MODEL, headline_score

KINDS = ("params", "flops", "latency")
Choice = dict[str, tuple[str, Rank] | None]


@dataclass(frozen=True)
class Target:
    """Keep at most ``fraction`` of the dense model's ``kind`` (``"params"``, ``"flops"`` or ``"latency"``)."""

    kind: str
    fraction: float

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise RankscopeError(f"target kind {self.kind!r} must be one of {', '.join(KINDS)}")
        if not 0 < self.fraction <= 1:
            raise RankscopeError(f"target fraction {self.fraction!r} must be in (0, 1]")


@dataclass
class Problem:
    """An allocation task.

    Parameters
    ----------
    model : the dense model.
    name : the model's name, recorded in the plan.
    example : one input sample, shape ``(1, ...)``, to place the layers (:func:`core.plan.cost.layer_sites`).
    target : the budget.
    table : a sweep table (:func:`core.sweep.sweep`); required by the greedy and rankscope allocators.
    layers : layer -> methods; default the table's layers and methods, else :func:`core.sweep.layer_methods`.
    data : labelled items the rankscope allocator scores whole compressed models on to refine its choice
        (:mod:`core.sweep.refine`); ``None`` leaves the knapsack's choice as it is. Keep the images accuracy
        is reported on out of it (e.g. a seeded subset of the training split).
    evaluations : at most this many whole-model evaluations of ``data`` in the refinement.
    times : layer latencies on the runtime, batch and threads the plan is for; required by a latency target,
        and with them any allocation reports its latency.
    multiple : ranks the uniform, energy and spectrum allocators choose are rounded to this multiple
        (:func:`core.decompose.rank.round_rank`); the table allocators take the table's ranks, rounded when swept.
    """

    model: nn.Module
    name: str
    example: torch.Tensor
    target: Target
    table: pd.DataFrame | None = None
    layers: dict[str, list[str]] | None = None
    data: Any = None
    evaluations: int = 40
    times: LayerTimes | None = None
    multiple: int = 1

    def __post_init__(self) -> None:
        if self.layers is None:
            if self.table is not None:
                points = self.table[self.table["method"] != DENSE]
                self.layers = {path: list(dict.fromkeys(group["method"])) for path, group in points.groupby("layer", sort=False)}
            else:
                self.layers = layer_methods(self.model)
        if self.target.kind == "latency" and self.times is None:
            raise RankscopeError("a latency target needs the layers' timings (core.speed.LayerTimes)")
        if self.times is not None:
            self.times.prepare(list(self.layers))

    def need_table(self, allocator: str) -> pd.DataFrame:
        """The sweep table, or a :class:`RankscopeError` naming ``allocator`` when there is none."""
        if self.table is None:
            raise RankscopeError(f"the {allocator} allocator needs a sweep table")
        return self.table

    @cached_property
    def costs(self) -> Costs:
        """The problem's :class:`Costs` (made once: it runs the model to place the layers)."""
        return Costs(self)


class Costs:
    """Prices of layers and choices in the problem's target kind (see the module docstring)."""

    def __init__(self, problem: Problem) -> None:
        self.problem, self.kind = problem, problem.target.kind
        model = problem.model
        self.sites = layer_sites(model, problem.example, list(problem.layers))
        self.base_params, self.base_flops = count_params(model), int(count_flops(model, problem.example).per_sample)
        if self.kind == "latency":
            self.base = problem.times.model_ms()
        else:
            self.base = float(self.base_params if self.kind == "params" else self.base_flops)
        self._dense = {path: self.of(path, None) for path in problem.layers}

    @property
    def budget(self) -> float:
        """The target's fraction of the dense total, read from the problem each time: a problem whose target is set to
        another fraction of the same kind is re-priced without placing its layers again.

        Raises
        ------
        RankscopeError
            The problem's target was set to another kind than these costs are in.
        """
        if self.problem.target.kind != self.kind:
            raise RankscopeError(f"these costs are in {self.kind}; a {self.problem.target.kind} target needs a new Problem")
        return self.problem.target.fraction * self.base

    def of(self, layer: str, option: tuple[str, Rank] | None) -> float:
        """Cost of ``layer`` as ``option`` builds it (the dense layer for ``None``)."""
        if self.kind == "latency":
            return self.problem.times.of(layer, *(option or (None, None)))
        module = self.problem.model.get_submodule(layer)
        entry = None if option is None else LayerEntry(option[0], option[1])
        return float(getattr(entry_cost(module, entry, self.sites[layer]), self.kind))

    def total(self, choice: Choice) -> float:
        """The model's cost with each layer of ``choice`` as chosen (an option costing more than dense is kept dense)."""
        return self.base + sum(min(self.of(layer, option) - self._dense[layer], 0.0)
                               for layer, option in choice.items() if option is not None)

    def dense(self, layer: str) -> float:
        """Cost of the dense ``layer``."""
        return self._dense[layer]


@dataclass(frozen=True)
class Option:
    """One way to build a layer, as the sweep table measured it: ``None`` keeps it dense."""

    choice: tuple[str, Rank] | None
    cost: float  # in the target's kind
    loss: float  # the table's loss minus the dense model's
    score: float  # the task's headline metric, signed so that higher is better


def table_options(problem: Problem, allocator: str) -> dict[str, list[Option]]:
    """Per layer of the problem: keep dense, then every swept point of its methods cheaper than dense, priced and scored."""
    table, costs = problem.need_table(allocator), problem.costs
    scores = headline_score(table)
    model_row = table["layer"] == MODEL
    base_loss, base_score = float(table.loc[model_row, "loss"].iloc[0]), float(scores[model_row].iloc[0])
    out: dict[str, list[Option]] = {}
    for layer, methods in problem.layers.items():
        rows = table[(table["layer"] == layer) & table["method"].isin(methods)]
        out[layer] = [Option(None, costs.dense(layer), 0.0, base_score)]
        for index, row in zip(rows.index, rows.itertuples()):
            option = (row.method, parse_rank(row.rank, get_method(row.method).rank_arity))
            cost = costs.of(layer, option)
            if cost < costs.dense(layer):  # no dearer than dense: finish() would keep the layer dense anyway
                out[layer].append(Option(option, cost, float(row.loss) - base_loss, float(scores[index])))
    return out


@dataclass
class Allocation:
    """A plan with what it costs.

    Attributes
    ----------
    plan : the plan (valid for the model; layers kept dense are listed in ``plan.skipped``).
    target : the budget asked for.
    cost, base : the planned and the dense model's totals in ``target.kind`` (params and FLOPs by
        :func:`core.plan.cost.plan_cost`; latency as :mod:`core.sweep.budget` sums it).
    delta_loss : sum over the changed layers of the sweep table's loss increase (NaN when a chosen rank is not in the table).
    note : how the allocator got there, and why the target was missed if it was.
    latency_ms, base_latency_ms : the plan's and the dense model's latency as the problem's timings sum them
        (``None`` without timings).
    """

    plan: Plan
    target: Target
    cost: float
    base: float
    delta_loss: float
    note: str = ""
    latency_ms: float | None = None
    base_latency_ms: float | None = None

    @property
    def ratio(self) -> float:
        """Cost as a fraction of the dense model's."""
        return self.cost / self.base

    @property
    def met(self) -> bool:
        """Whether the cost is within the target."""
        return self.cost <= self.target.fraction * self.base

    def summary(self) -> str:
        """One line: layers compressed, cost ratio against the target, summed loss increase, the allocator's note."""
        state = "meets" if self.met else "MISSES"
        timed = ("" if self.latency_ms is None or self.target.kind == "latency" else
                 f"; latency {self.latency_ms:.3f} of {self.base_latency_ms:.3f} ms as the layers' timings sum")
        return (f"{len(self.plan.layers)} layer(s) compressed, {self.target.kind} {self.ratio:.4f} of dense "
                f"({state} the target {self.target.fraction:g}); summed sweep loss increase {self.delta_loss:.4f}"
                + timed + (f"; {self.note}" if self.note else ""))


def delta_loss(table: pd.DataFrame | None, choice: Choice) -> float:
    """Sum over the changed layers of the table's ``loss`` minus the dense model's (NaN if a point is missing)."""
    if table is None:
        return math.nan
    base = float(table.loc[table["layer"] == MODEL, "loss"].iloc[0])
    losses = table.set_index(["layer", "method", "rank"])["loss"]
    total = 0.0
    for layer, option in choice.items():
        if option is not None:
            key = (layer, option[0], rank_text(option[1]))
            if key not in losses.index:
                return math.nan
            total += float(losses[key]) - base
    return total


def finish(problem: Problem, choice: Choice, allocator: str, note: str = "") -> Allocation:
    """The :class:`Allocation` of ``choice``: a plan checked with :func:`core.plan.validate_plan`, priced exactly.

    Layers whose option costs no less than the dense layer are kept dense.
    """
    costs = problem.costs
    kept = {layer: option for layer, option in choice.items()
            if option is not None and costs.of(layer, option) < costs.dense(layer)}
    plan = Plan(problem.name, {layer: LayerEntry(m, r) for layer, (m, r) in kept.items()},
                weights_hash(problem.model), {layer: f"kept dense by the {allocator} allocator"
                                              for layer in problem.layers if layer not in kept})
    problems = validate_plan(plan, problem.model)
    if problems:
        raise RankscopeError(f"the {allocator} allocator made an invalid plan: {'; '.join(problems)}")
    if costs.kind == "latency":
        cost = costs.total(kept)
    else:
        priced = plan_cost(problem.model, plan, costs.sites, costs.base_params, costs.base_flops)
        cost = float(priced.params if costs.kind == "params" else priced.flops)
    latency = base_latency = None
    if problem.times is not None:
        times, base_latency = problem.times, problem.times.model_ms()
        latency = base_latency + sum(times.of(layer, *option) - times.dense(layer) for layer, option in kept.items())
        times.save()
    return Allocation(plan, problem.target, cost, costs.base, delta_loss(problem.table, kept), note, latency, base_latency)

"""Latency-aware density allocation: prune where measured latency saved per unit of loss is largest.

Given a reference plan (densities per group, e.g. 0.5 everywhere), the allocation spends the same
FLOPs differently:

1. Each group is pruned alone at each density of a ladder (1/8 steps and the reference densities);
   the latency of the group's own conv/linear layers is measured (:func:`measure_layer_latency`,
   median of ``repeats`` calls on their inputs from ``example``) and so is the cross-entropy on the
   calibration batches.
2. Greedily, starting from no pruning, the group whose next step down its ladder saves the most
   measured milliseconds per unit of loss increase takes that step, until the whole model, pruned at
   the current densities, has no more FLOPs than the reference plan (counted exactly at each step).

Savings of different groups are taken as additive (a layer shared by two groups counts in both), and
each group's loss increase as measured with the others unpruned: a first-order plan, simple and
measured. FLOPs rather than latency stop the search because they are exact, so the target is met
deterministically; latency, noisy on small layers, only decides the order.

The allocation only chooses densities; :func:`core.prune.prune_model` applies them
(``prune_model(model, example, allocation.densities, score=score)``).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from core.errors import RankscopeError
from core.task import get_task
from core.profile.context import prepared
from core.profile.counts import count_flops
from core.profile.latency import measure_layer_latency
from core.prune.groups import group_roots, member_layers
from core.prune.importance import score_gradients
from core.prune.prune import Batches, check_densities, prune_scored
from core.resample.resample import new_size

LADDER = tuple(k / 8 for k in range(7, 0, -1))  # 0.875 ... 0.125
MIN_LOSS_STEP = 1e-4  # loss increases below this (or negative ones) count as this, so their ratio stays finite


@dataclass(frozen=True)
class Step:
    """One greedy step: ``group`` went down to ``density``, saving ``saved_ms`` for ``loss_increase``."""

    group: str
    density: float
    saved_ms: float
    loss_increase: float


@dataclass(frozen=True)
class Allocation:
    """Result of :func:`allocate_latency_aware`.

    Attributes
    ----------
    densities : the allocated density of every group of the reference plan.
    flops : FLOPs of ``example`` through the model pruned at ``densities``.
    target_flops : FLOPs of ``example`` through the model pruned at the reference densities.
    steps : the greedy steps in the order taken.
    """

    densities: dict[str, float]
    flops: int
    target_flops: int
    steps: list[Step]


def calibration_loss(model: nn.Module, data: Batches) -> float:
    """Mean cross-entropy of ``model`` (in eval mode) over labelled batches."""
    tally = get_task("classification").tally()
    first = next(model.parameters(), None)
    home = first.device if first is not None else torch.device("cpu")
    with prepared(model, home), torch.inference_mode():
        for images, labels in data:
            tally.add(model(images.to(home)), torch.as_tensor(labels, device=home).long())
    return tally.result()["loss"]


def _ladder(units: int, steps: Sequence[float], reference: Sequence[float]) -> list[float]:
    """Descending densities among ``steps`` and ``reference`` that each keep a different number (< ``units``) of units."""
    seen, ladder = {units}, []
    for density in sorted({d for d in (*steps, *reference) if d < 1}, reverse=True):
        keep = new_size(units, density)
        if keep not in seen:
            seen.add(keep)
            ladder.append(density)
    return ladder


def allocate_latency_aware(
    model: nn.Module,
    example: torch.Tensor,
    densities: Mapping[str, float],
    *,
    score: str = "l1",
    data: Batches | None = None,
    ladder: Sequence[float] = LADDER,
    repeats: int = 20,
) -> Allocation:
    """Densities for the groups of ``densities`` with the same FLOPs, cut where latency per loss is cheapest.

    Parameters
    ----------
    model : the network (left untouched).
    example : the input batch latency and FLOPs are measured on (its batch size is the one timed).
    densities : the reference plan ``{group: density}``; its FLOPs are the target, its groups the ones
        allocated (others keep all their channels).
    score : the importance score that ranks channels inside each group.
    data : labelled calibration batches (training data): losses, and gradients for ``taylor``/``hessian``.
    ladder : the densities each group may step down through (the reference densities are added).
    repeats : timed calls per layer latency.

    Raises
    ------
    RankscopeError
        No data, an unknown group or score, a density outside (0, 1].
    """
    groups = group_roots(model, example)
    check_densities(densities, {n: info for n, (_, info, _) in groups.items()})
    batches = list(data or [])
    if not batches:
        raise RankscopeError("latency-aware pruning measures the loss of each cut: pass data= a few (images, labels) batches")
    gradients = score_gradients(model, score, batches)

    def pruned(plan: Mapping[str, float]) -> nn.Module:
        return prune_scored(model, example, plan, score, gradients)[0]

    target = count_flops(pruned(densities), example).total
    members = {n: member_layers(model, groups[n][2]) for n in densities}
    base_ms = {n: r.median_ms for n, r in measure_layer_latency(
        model, example, sorted({m for ms in members.values() for m in ms}), repeats=repeats).items()}
    base_loss = calibration_loss(model, batches)
    ladders, latency, loss = {}, {}, {}
    for name in densities:
        ladders[name] = [1.0] + _ladder(groups[name][1].channels, ladder, list(densities.values()))
        latency[name], loss[name] = [sum(base_ms[m] for m in members[name])], [base_loss]
        for density in ladders[name][1:]:
            candidate = pruned({name: density})
            timed = measure_layer_latency(candidate, example, members[name], repeats=repeats)
            latency[name].append(sum(r.median_ms for r in timed.values()))
            loss[name].append(calibration_loss(candidate, batches))

    position = dict.fromkeys(densities, 0)
    current = dict.fromkeys(densities, 1.0)
    steps: list[Step] = []
    flops = count_flops(model, example).total
    while flops > target:
        def gain(name: str) -> tuple[float, float]:
            i = position[name]
            saved, worse = latency[name][i] - latency[name][i + 1], loss[name][i + 1] - loss[name][i]
            return saved / max(worse, MIN_LOSS_STEP), -worse  # ties (no measurable saving): smaller loss first

        name = max((n for n in densities if position[n] + 1 < len(ladders[n])), key=gain)
        i = position[name] = position[name] + 1
        current[name] = ladders[name][i]
        steps.append(Step(name, current[name], latency[name][i - 1] - latency[name][i], loss[name][i] - loss[name][i - 1]))
        flops = count_flops(pruned(current), example).total
    return Allocation(current, flops, target, steps)

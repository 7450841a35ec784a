"""Structured pruning of named channel groups through Torch-Pruning: a physically smaller copy of the model.

Each named group (see :mod:`core.prune.groups`) keeps ``new_size(N, density)`` (:func:`core.resample.resample.new_size`) of its ``N`` channels
(or heads), those the chosen score (:mod:`core.prune.importance`) ranks highest; every layer of the group
loses the same channels, so residual adds stay consistent. Groups left out of ``densities`` keep all
their channels. The pruner ranks each group on its own (``global_pruning=False``); the model passed in
is never modified.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from core.errors import RankscopeError, close_matches_hint
from core.profile.counts import count_params
from core.prune.groups import HEADS, ROOT_TYPES, GraphSetup, GroupInfo, graph_setup, group_roots, prunable_groups
from core.prune.importance import make_importance, score_gradients
from core.resample.resample import new_size  # the rule resampling uses too: round(density * N), at least 1

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class GroupChange:
    """One group's units (channels or heads) before and after pruning."""

    kind: str
    before: int
    after: int


@dataclass(frozen=True)
class PruneReport:
    """What :func:`prune_model` did.

    Attributes
    ----------
    score : the importance score that ranked the channels.
    densities : the density each group was asked for.
    groups : ``{name: GroupChange}`` for every prunable group, pruned or not.
    params_before, params_after : parameter elements of the original and of the pruned model.
    seconds : wall time of scoring and pruning.
    """

    score: str
    densities: dict[str, float]
    groups: dict[str, GroupChange]
    params_before: int
    params_after: int
    seconds: float


def check_densities(densities: Mapping[str, float], groups: Mapping[str, GroupInfo]) -> None:
    """:class:`RankscopeError` for a name that is not a prunable group or a density outside (0, 1]."""
    for name, density in densities.items():
        if name not in groups:
            valid = list(groups)
            raise RankscopeError(f"no prunable group named {name!r}" + close_matches_hint(name, valid) + f"; groups: {', '.join(valid)}")
        if not (isinstance(density, (int, float)) and 0 < density <= 1):
            raise RankscopeError(f"density of {name} must be a fraction of channels kept in (0, 1], got {density!r}")


def _tp_ratio(keep: int, units: int) -> float:
    """The pruning ratio for which tp keeps exactly ``keep`` of ``units``.

    tp keeps ``int(units * (1 - ratio))`` channels and removes ``ceil(ratio * units)`` heads; half a unit
    of margin makes both land on ``keep`` whatever the floating-point rounding of ``1 - density``.
    """
    return 1 - (keep + 0.5) / units


def prune_scored(
    model: nn.Module,
    example: torch.Tensor,
    densities: Mapping[str, float],
    score: str,
    gradients: Mapping[str, torch.Tensor],
    *,
    round_to: int | None = None,
) -> tuple[nn.Module, dict[str, GroupChange]]:
    """Prune a deep copy of ``model`` with ``gradients`` (from :func:`score_gradients`) already computed.

    The step :func:`prune_model` runs after scoring; exposed so that a caller pruning one model many
    times (the latency-aware allocator) computes the gradients once. Densities are not checked here.
    """
    work = copy.deepcopy(model)
    training = work.training
    work.eval()
    setup = graph_setup(work)
    roots = group_roots(work, example, setup)
    ratios = {roots[n][0]: _tp_ratio(new_size(roots[n][1].channels, d), roots[n][1].channels)
              for n, d in densities.items() if new_size(roots[n][1].channels, d) < roots[n][1].channels}
    for name, param in work.named_parameters():
        param.grad = gradients.get(name)
    pruner = tp.pruner.BasePruner(
        work, example, make_importance(score),
        global_pruning=False,
        pruning_ratio=0.0,  # groups not named in densities keep every channel
        # tp 1.6 only removes heads of an attention group whose channel ratio is positive too; with
        # prune_head_dims=False that ratio removes no head dimensions.
        pruning_ratio_dict=ratios,
        head_pruning_ratio_dict={m: r for m, r in ratios.items() if m in setup.attention},
        num_heads=setup.num_heads(), prune_num_heads=True, prune_head_dims=False,
        ignored_layers=list(setup.ignored), unwrapped_parameters=setup.unwrapped,
        root_module_types=list(ROOT_TYPES), round_to=round_to,
        # fresh dicts: tp's defaults for these are shared mutable dicts that its constructor writes into
        in_channel_groups={}, out_channel_groups={},
    )
    with torch.enable_grad():  # tp asserts autograd is on when it traces
        pruner.step()
    for qkv, attn in setup.attention.items():
        attn.num_heads = pruner.num_heads[qkv]  # timm reshapes qkv by these
        attn.attn_dim = attn.num_heads * attn.head_dim
    for param in work.parameters():
        param.grad = None
    changes = {name: GroupChange(info.kind, info.channels, _units(root, info, setup)) for name, (root, info, _) in roots.items()}
    return work.train(training), changes


def _units(root: nn.Module, info: GroupInfo, setup: GraphSetup) -> int:
    if info.kind == HEADS:
        return setup.attention[root].num_heads
    return root.out_channels if isinstance(root, nn.Conv2d) else root.out_features


def prune_model(
    model: nn.Module,
    example: torch.Tensor,
    densities: Mapping[str, float],
    *,
    score: str = "l1",
    data: Batches | None = None,
    round_to: int | None = None,
) -> tuple[nn.Module, PruneReport]:
    """A physically smaller copy of ``model`` in which each named group keeps a fraction of its channels.

    Parameters
    ----------
    model : the network (left untouched; the copy has its training mode).
    example : an input batch for tracing, e.g. :func:`core.profile.report.example_input`.
    densities : ``{group name: fraction of channels (or heads) kept}``, each in (0, 1]; a group keeps
        :func:`core.resample.resample.new_size` of them. Names come from :func:`core.prune.prunable_groups`; groups not
        named keep all their channels. :func:`core.prune.uniform_densities` gives one density everywhere,
        ``core.prune.allocate_latency_aware(...).densities`` the same FLOPs spent where latency is cheapest to cut.
    score : ``"l1"``, ``"taylor"``, ``"hessian"`` or ``"lamp"`` (:mod:`core.prune.importance`).
    data : labelled ``(images, labels)`` batches of training data, for the ``taylor``/``hessian`` gradients.
    round_to : keep a multiple of this many channels in each pruned channel group (tp's ``round_to``;
        heads are not rounded).

    Returns
    -------
    tuple
        ``(pruned model, PruneReport)``.

    Raises
    ------
    RankscopeError
        An unknown group or score, a density outside (0, 1], a gradient score without data, or a capsule network.
    """
    start = time.perf_counter()
    groups = prunable_groups(model, example)
    check_densities(densities, groups)
    gradients = score_gradients(model, score, data)
    pruned, changes = prune_scored(model, example, densities, score, gradients, round_to=round_to)
    report = PruneReport(score, dict(densities), changes, count_params(model), count_params(pruned), time.perf_counter() - start)
    return pruned, report


def uniform_densities(model: nn.Module, example: torch.Tensor, density: float) -> dict[str, float]:
    """``{name: density}`` for every prunable group of ``model``."""
    if not (isinstance(density, (int, float)) and 0 < density <= 1):
        raise RankscopeError(f"density must be a fraction of channels kept in (0, 1], got {density!r}")
    return {name: float(density) for name in prunable_groups(model, example)}


"""The three kinds of plan entry, and how each is checked against a model and applied.

``decomposition`` (``svd``, ``tucker2``, … from :mod:`core.decompose`)
    Keyed by a module path; the module is replaced by its factors (checked and built in :mod:`core.plan`).
``attention``
    Keyed by the path of an attention module; it is replaced by a variant from :mod:`core.attention`
    (``variant: nmf``), reusing its projection weights. ``rank`` is the variant's ``rank`` option where it
    has one; every other hyperparameter goes in ``options`` (``{k: 32}`` for linformer).
``resample`` / ``prune`` (under the plan's ``groups:``, not ``layers:``)
    Keyed by a channel group's name (:func:`core.resample.channel_groups`, the same names as
    :func:`core.prune.prunable_groups`); ``density`` is the fraction of the group's channels kept. The
    group is resampled (continuous, Integral-Neural-Network style) or pruned by an importance score
    (``options: {score: taylor}``); either way every layer of the group becomes physically narrower.

Group entries change several layers at once, so :func:`core.plan.apply_plan` applies them first, to
the model as given, and then checks and applies the module entries against the narrower model.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from core.errors import close_matches_hint

ATTENTION = "attention"
GROUP_METHODS = ("resample", "prune")
GROUP_OPTIONS = {"resample": {"order"}, "prune": {"score"}}


def is_group_method(method: str) -> bool:
    """Whether entries of ``method`` are keyed by a channel group rather than a module."""
    return method in GROUP_METHODS


def group_names(model: nn.Module, example: torch.Tensor, method: str) -> list[str]:
    """The channel groups a ``resample`` or a ``prune`` entry can name, in model order (pruning has no
    capsule-type groups: Torch-Pruning does not know capsule routing)."""
    if method == "prune":
        from core.prune import prunable_groups

        return list(prunable_groups(model, example))
    from core.resample import channel_groups

    return list(channel_groups(model, example))


def group_problems(model: nn.Module, entries: dict[str, Any], example: torch.Tensor | None) -> list[str]:
    """Every problem of the plan's group entries (``{name: LayerEntry}``), each prefixed with the group name."""
    if not entries:
        return []
    if example is None:
        return [f"{', '.join(list(entries)[:3])}: resample and prune entries need an example input to find the channel groups"]
    names = {m: group_names(model, example, m) for m in {e.method for e in entries.values()}}
    problems = []
    for name, entry in entries.items():
        if name not in names[entry.method]:
            problems.append(f"{name}: no channel group {entry.method} can take by that name"
                            f"{close_matches_hint(name, names[entry.method])} (see `rankscope groups`)")
        if entry.density is None:
            problems.append(f"{name}: {entry.method} needs density: the fraction of the group's channels to keep, in (0, 1]")
        if entry.rank is not None:
            problems.append(f"{name}: {entry.method} takes a density, not a rank")
        unknown = sorted(set(entry.options) - GROUP_OPTIONS[entry.method])
        if unknown:
            problems.append(f"{name}: {entry.method} takes no option {', '.join(unknown)} "
                            f"(options: {', '.join(sorted(GROUP_OPTIONS[entry.method]))})")
        if entry.method == "prune" and "score" in entry.options:
            from core.prune import SCORES

            if entry.options["score"] not in SCORES:
                problems.append(f"{name}: unknown pruning score {entry.options['score']!r} (known: {', '.join(SCORES)})")
    return problems


def data_needs(plan: Any) -> tuple[bool, bool]:
    """Whether applying ``plan`` needs calibration inputs, and whether it needs their labels too.

    Inputs: data-aware decompositions (aa_svd, tucker2_nl). Labels: the gradient-based pruning scores.
    """
    from core.decompose.registry import get_method

    scores = {e.options.get("score", "l1") for e in plan.groups.values() if e.method == "prune"}
    labels = False
    if scores:
        from core.prune import needs_gradients

        labels = any(needs_gradients(score) for score in scores)
    inputs = labels or any(e.method not in (ATTENTION, *GROUP_METHODS) and get_method(e.method).needs_calibration
                           for e in plan.layers.values())
    return inputs, labels


def group_structure(entries: dict[str, Any]) -> dict[str, Any]:
    """The same group entries, made cheapest to apply: the narrowed model's shapes depend only on the
    densities, not on the channel order or on which channels a score keeps (used to validate)."""
    from dataclasses import replace

    return {n: replace(e, options={"order": False} if e.method == "resample" else {"score": "l1"}) for n, e in entries.items()}


def apply_groups(
    model: nn.Module,
    entries: dict[str, Any],
    example: torch.Tensor,
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[nn.Module, dict[str, str]]:
    """A new model with the group entries applied (resampled groups first, then pruned ones) and what each did.

    ``data`` (inputs, labels) feeds the gradient-based pruning scores (taylor, hessian).
    """
    from core.prune import prune_model
    from core.resample import resample_model

    applied: dict[str, str] = {}
    resample = {n: e for n, e in entries.items() if e.method == "resample"}
    if resample:  # one channel order for all resampled groups: ordering is off only when every entry turns it off
        orders = {bool(e.options.get("order", True)) for e in resample.values()}
        model, report = resample_model(model, example, {n: e.density for n, e in resample.items()}, order=orders != {False})
        applied |= {g.name: f"resample density {g.density:g} ({g.kind} group: {g.channels} → {g.new_channels} "
                            f"{'heads' if g.kind == 'heads' else 'channels'})" for g in report.groups}
    by_score: dict[str, dict[str, float]] = {}
    for name, entry in entries.items():
        if entry.method == "prune":
            by_score.setdefault(entry.options.get("score", "l1"), {})[name] = entry.density
    for score, densities in by_score.items():
        model, pruned = prune_model(model, example, densities, score=score, data=None if data is None else [data])
        applied |= {n: f"prune {score} density {d:g} ({pruned.groups[n].before} → {pruned.groups[n].after} "
                       f"{pruned.groups[n].kind})" for n, d in densities.items()}
    return model, applied


def attention_problem(model: nn.Module, path: str, entry: Any) -> str | None:
    """Why an ``attention`` entry does not fit the module at ``path``, or ``None``."""
    from core.attention import attention_paths, list_variants, variant_options

    if path not in attention_paths(model):
        return f"attention needs an attention module (timm Attention or a swapped variant), got {type(model.get_submodule(path)).__name__}"
    if entry.variant not in list_variants():
        return f"unknown attention variant {entry.variant!r}{close_matches_hint(str(entry.variant), list_variants())} " \
               f"(known: {', '.join(list_variants())})"
    options = variant_options(entry.variant)
    if entry.rank is not None and "rank" not in options:
        return f"{entry.variant} has no rank; give its size in options ({', '.join(options)})"
    unknown = sorted(set(entry.options) - set(options))
    if unknown:
        return f"{entry.variant} takes no option {', '.join(unknown)} (options: {', '.join(options) or 'none'})"
    return None


def attention_hyper(entry: Any) -> dict[str, Any]:
    """The variant's hyperparameters from an ``attention`` entry: its options, with ``rank`` when given."""
    return {**entry.options, **({"rank": entry.rank} if entry.rank is not None else {})}


def build_attention(module: nn.Module, entry: Any, tokens: torch.Tensor | None) -> nn.Module:
    """The variant an ``attention`` entry asks for, built from ``module``; ``tokens`` is the module's input (B×N×C)."""
    from core.attention import swap_attention

    seq_len = None if tokens is None else int(tokens.shape[1])
    return swap_attention(module, entry.variant, seq_len=seq_len, calibration=tokens, **attention_hyper(entry))

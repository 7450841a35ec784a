"""How each kind of plan entry is checked against a model and applied: a dispatch table keyed by kind.

Module kinds (:data:`MODULE_KINDS`, entries under ``layers:`` keyed by module path) replace one module:

``decomposition``
    :mod:`core.decompose`'s method builds the module's factors at the entry's rank; data-aware methods
    need the layer's inputs on calibration data.
``attention``
    :mod:`core.attention` swaps in a variant reusing the module's projections; it needs the module's
    input tokens (their sequence length, and calibration tokens for the data-aware variants).

Group kinds (:data:`GROUP_KINDS`, entries under ``groups:`` keyed by channel-group name) narrow
several layers at once: ``resample`` (continuous, Integral-Neural-Network style, :mod:`core.resample`)
and ``prune`` (an importance score, :mod:`core.prune`). Group entries are applied first, by
:func:`apply_groups`; the module entries are then checked and built on the narrowed model.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from core.attention import attention_paths, get_causal_variant, list_variants, model_variants, swap_attention, variant_options
from core.decompose.rank import rank_problem
from core.decompose.registry import get_method, list_methods
from core.errors import RankscopeError, close_matches_hint
from core.plan.entry import ATTENTION, GROUP_METHODS, LayerEntry
from core.prune import SCORES, needs_gradients, prunable_groups, prune_model
from core.resample import channel_groups, resample_model

GROUP_OPTIONS = {"resample": {"order"}, "prune": {"score"}}


@dataclass(frozen=True)
class ModuleKind:
    """One kind of ``layers:`` entry.

    Attributes
    ----------
    problem : ``(model, path, entry) -> reason | None``, the module at ``path`` being in ``model``.
    build : ``(module, entry, inputs) -> new module``; ``inputs`` is what the module receives on the
        calibration (or example) batch, ``None`` when :attr:`needs_inputs` says it needs none.
    needs_inputs : ``entry -> bool``, whether building needs the module's inputs.
    needs_calibration : ``entry -> bool``, whether those inputs must come from real data (not just an example).
    """

    problem: Callable[[nn.Module, str, LayerEntry], str | None]
    build: Callable[[nn.Module, LayerEntry, torch.Tensor | None], nn.Module]
    needs_inputs: Callable[[LayerEntry], bool]
    needs_calibration: Callable[[LayerEntry], bool]


def _decomposition_problem(model: nn.Module, path: str, entry: LayerEntry) -> str | None:
    if entry.method not in list_methods():
        known = ", ".join([*list_methods(), ATTENTION, *GROUP_METHODS])
        return f"unknown method {entry.method!r} (known: {known})"
    method, module = get_method(entry.method), model.get_submodule(path)
    reason = method.check(module)
    if reason:
        return f"{entry.method} does not apply ({reason})"
    return rank_problem(method, module, entry.rank)


def _build_decomposition(module: nn.Module, entry: LayerEntry, inputs: torch.Tensor | None) -> nn.Module:
    return get_method(entry.method).build(module, entry.rank, calibration=inputs, **entry.options)


def _is_data_aware(entry: LayerEntry) -> bool:
    return entry.method in list_methods() and get_method(entry.method).needs_calibration


def attention_problem(model: nn.Module, path: str, entry: LayerEntry) -> str | None:
    """Why an ``attention`` entry does not fit the module at ``path``, or ``None``."""
    if path not in attention_paths(model):
        return f"attention needs an attention module (timm Attention or a swapped variant), got {type(model.get_submodule(path)).__name__}"
    if entry.variant not in list_variants():
        return f"unknown attention variant {entry.variant!r}{close_matches_hint(str(entry.variant), list_variants())} " \
               f"(known: {', '.join(list_variants())})"
    if entry.variant not in model_variants(model):
        try:
            get_causal_variant(str(entry.variant))
        except RankscopeError as err:
            return str(err)
    options = variant_options(entry.variant)
    if entry.rank is not None and "rank" not in options:
        return f"{entry.variant} has no rank; give its size in options ({', '.join(options)})"
    unknown = sorted(set(entry.options) - set(options))
    if unknown:
        return f"{entry.variant} takes no option {', '.join(unknown)} (options: {', '.join(options) or 'none'})"
    return None


def attention_hyper(entry: LayerEntry) -> dict:
    """The variant's hyperparameters from an ``attention`` entry: its options, with ``rank`` when given."""
    return {**entry.options, **({"rank": entry.rank} if entry.rank is not None else {})}


def _build_attention(module: nn.Module, entry: LayerEntry, tokens: torch.Tensor | None) -> nn.Module:
    seq_len = None if tokens is None else int(tokens.shape[1])
    return swap_attention(module, entry.variant, seq_len=seq_len, calibration=tokens, **attention_hyper(entry))


MODULE_KINDS: dict[str, ModuleKind] = {
    "decomposition": ModuleKind(_decomposition_problem, _build_decomposition, _is_data_aware, _is_data_aware),
    ATTENTION: ModuleKind(attention_problem, _build_attention, lambda e: True, lambda e: False),
}


def module_problems(entries: dict[str, LayerEntry], model: nn.Module) -> list[str]:
    """Every problem of the ``layers:`` entries against ``model``, each prefixed with its module path."""
    modules = dict(model.named_modules())
    swapped = [p for p, e in entries.items() if e.method == ATTENTION]
    problems = []
    for path, entry in entries.items():
        if path not in modules or path == "":
            problems.append(f"{path}: no such module in the model")
            continue
        inside = next((p for p in swapped if path.startswith(p + ".")), None)
        reason = (f"inside {inside}, which the plan replaces by an attention variant" if inside
                  else MODULE_KINDS[entry.kind].problem(model, path, entry))
        if reason:
            problems.append(f"{path}: {reason}")
    return problems


# --- channel groups --------------------------------------------------------------------------
@dataclass(frozen=True)
class GroupKind:
    """One kind of ``groups:`` entry.

    Attributes
    ----------
    names : ``(model, example) -> group names`` the kind can take, in model order.
    needs_labels : ``entry -> bool``, whether applying needs labelled calibration data.
    """

    names: Callable[[nn.Module, torch.Tensor], list[str]]
    needs_labels: Callable[[LayerEntry], bool]


GROUP_KINDS: dict[str, GroupKind] = {
    "resample": GroupKind(lambda m, x: list(channel_groups(m, x)), lambda e: False),
    # pruning has no capsule-type groups: Torch-Pruning does not know capsule routing
    "prune": GroupKind(lambda m, x: list(prunable_groups(m, x)), lambda e: needs_gradients(e.options.get("score", "l1"))),
}


def group_problems(model: nn.Module, entries: dict[str, LayerEntry], example: torch.Tensor | None) -> list[str]:
    """Every problem of the plan's group entries, each prefixed with the group name."""
    if not entries:
        return []
    if example is None:
        return [f"{', '.join(list(entries)[:3])}: resample and prune entries need an example input to find the channel groups"]
    names = {m: GROUP_KINDS[m].names(model, example) for m in {e.method for e in entries.values()}}
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
        if entry.method == "prune" and "score" in entry.options and entry.options["score"] not in SCORES:
            problems.append(f"{name}: unknown pruning score {entry.options['score']!r} (known: {', '.join(SCORES)})")
    return problems


def group_structure(entries: dict[str, LayerEntry]) -> dict[str, LayerEntry]:
    """The same group entries, made cheapest to apply: the narrowed model's shapes depend only on the
    densities, not on the channel order or on which channels a score keeps (used to validate)."""
    return {n: replace(e, options={"order": False} if e.method == "resample" else {"score": "l1"}) for n, e in entries.items()}


def apply_groups(
    model: nn.Module,
    entries: dict[str, LayerEntry],
    example: torch.Tensor,
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[nn.Module, dict[str, str]]:
    """A new model with the group entries applied (resampled groups first, then pruned ones) and what each did.

    ``data`` (inputs, labels) feeds the gradient-based pruning scores (taylor, hessian).
    """
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

"""Checking a plan against a model and applying it; :func:`compress` is the one call the CLI, the dashboard
and ``create_model('file:DIR')`` use: gather the data the plan needs, validate, apply.

The original model is never modified: :func:`apply_plan` returns a new one and a report.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from core.data import default_dataset, labelled_batch
from core.errors import RankscopeError
from core.layers import layer_inputs, set_module
from core.models.cfg import ModelCfg
from core.plan.document import Plan, PlanError, weights_hash
from core.plan.kinds import GROUP_KINDS, MODULE_KINDS, apply_groups, group_problems, group_structure, module_problems
from core.posttrain import Entry, PostTrainReport, as_batches, posttrain
from core.profile import example_input
from core.task.labels import NO_LABEL

Batch = tuple[torch.Tensor, torch.Tensor]  # model inputs and their labels


def validate_plan(plan: Plan, model: nn.Module, example: torch.Tensor | None = None) -> list[str]:
    """Every problem of ``plan`` against ``model``, each prefixed with its module path or group name ([] when valid).

    ``example`` (a batch of model inputs) is needed only by channel-group entries (``plan.groups``): the
    groups are found by tracing. When the plan has group entries, its module entries are checked against
    the narrowed model, the one they will be applied to.
    """
    problems = group_problems(model, plan.groups, example)
    if plan.groups and plan.layers and not problems:
        model, _ = apply_groups(model, group_structure(plan.groups), example)
    return problems + module_problems(plan.layers, model)


def data_needs(plan: Plan) -> tuple[bool, bool]:
    """Whether applying ``plan`` needs calibration inputs, and whether it needs their labels too.

    Inputs: data-aware decompositions (aa_svd, tucker2_nl), post-training steps. Labels: the gradient-based pruning
    scores.
    """
    labels = any(GROUP_KINDS[e.method].needs_labels(e) for e in plan.groups.values())
    inputs = labels or any(MODULE_KINDS[e.kind].needs_calibration(e) for e in plan.layers.values()) \
        or (plan.posttrain is not None and plan.posttrain.active)
    return inputs, labels


@dataclass
class ApplyReport:
    """What ``apply_plan`` did: replaced modules with their method and rank, and what it skipped and why."""

    applied: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    posttrain: PostTrainReport | None = None

    def summary(self) -> str:
        """The report as lines of text."""
        lines = [f"applied {len(self.applied)} layer(s), skipped {len(self.skipped)}"]
        lines += [f"  {path}: {what}" for path, what in self.applied.items()]
        lines += [f"  skipped {path}: {why}" for path, why in self.skipped.items()]
        if self.posttrain is not None:
            lines += [f"  {line}" for line in self.posttrain.summary().splitlines()]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def apply_plan(
    model: nn.Module,
    plan: Plan,
    *,
    force: bool = False,
    calibration: torch.Tensor | None = None,
    example: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[nn.Module, ApplyReport]:
    """Return a compressed copy of ``model`` and a report; ``model`` itself is left untouched.

    Parameters
    ----------
    model : the model the plan was made for.
    plan : the plan (validated here against ``model``; all problems raise one :class:`PlanError`).
    force : apply even if ``plan.weights_hash`` differs from the model's weights (a warning is reported).
    calibration : a batch of *model* inputs for data-aware methods; each layer's inputs are captured from it.
    example : a batch of model inputs for tracing: channel groups, attention sequence lengths (defaults
        to the first calibration input).
    labels : the labels of ``calibration``, for the gradient-based pruning scores (taylor, hessian).
    progress : called with ``(blocks done, blocks)`` by the plan's post-training steps, if any.
    """
    if example is None and calibration is not None:
        example = calibration[:1]
    problems = group_problems(model, plan.groups, example)
    if problems:
        raise PlanError(problems)
    report = ApplyReport(skipped=dict(plan.skipped))
    if plan.weights_hash:
        actual = weights_hash(model)
        if actual != plan.weights_hash:
            message = f"plan was made for weights {plan.weights_hash}, this model has {actual}"
            if not force:
                raise RankscopeError(message + "; pass --force (force=True) to apply it anyway")
            report.warnings.append(message)
    base = model
    if plan.groups:
        data = None if calibration is None or labels is None else (calibration, labels)
        base, report.applied = apply_groups(model, plan.groups, example, data)
    problems = module_problems(plan.layers, base)
    if problems:
        raise PlanError(problems)
    kinds = {path: MODULE_KINDS[entry.kind] for path, entry in plan.layers.items()}
    needs_data = [p for p, e in plan.layers.items() if kinds[p].needs_calibration(e)]
    if needs_data and calibration is None:
        raise RankscopeError(f"{', '.join(needs_data[:3])}: data-aware methods need calibration data (--data)")
    steps = plan.posttrain if plan.posttrain is not None and plan.posttrain.active else None
    if steps is not None and calibration is None:
        raise RankscopeError("the plan's post-training steps (posttrain: sequential fitting, bias and BatchNorm "
                             "correction, block reconstruction) need calibration data (--data)")
    wanted = [p for p, e in plan.layers.items() if kinds[p].needs_inputs(e)]
    if wanted and calibration is None and example is None:
        raise RankscopeError(f"{', '.join(wanted[:3])}: attention entries need an example input (their sequence length)")
    sequential = steps is not None and steps.sequential
    inputs = layer_inputs(base, wanted, example if calibration is None else calibration) if wanted and not sequential else {}
    new = copy.deepcopy(base) if base is model else base  # a narrowed model is already a new one
    # the reference of the post-training steps: a narrowed model is changed in place below, so it is copied first
    dense = copy.deepcopy(base) if base is not model and steps is not None else base
    originals = dict(dense.named_modules())  # replacing a module in ``new`` leaves these references intact

    def build(path: str, module: nn.Module, received: torch.Tensor | None) -> nn.Module:
        entry = plan.layers[path]
        try:
            return kinds[path].build(module, entry, received)
        except (TypeError, RankscopeError) as err:
            raise PlanError([f"{path}: {entry.method}: {err}"]) from None

    if not sequential:
        for path in plan.layers:
            set_module(new, path, build(path, originals[path], inputs.get(path)))
    if steps is not None:
        entries = {path: Entry(e.method, e.rank, lambda module, x, path=path: build(path, module, x), path in wanted)
                   for path, e in plan.layers.items()}
        report.posttrain = posttrain(dense, new, entries, as_batches(calibration), steps, progress)
    report.applied.update((path, entry.describe()) for path, entry in plan.layers.items())
    return new.eval(), report


def compress(
    model: nn.Module,
    cfg: ModelCfg,
    plan: Plan,
    *,
    data: str | Batch | None = None,
    force: bool = False,
) -> tuple[nn.Module, ApplyReport]:
    """Gather the data ``plan`` needs, check it against ``model`` and apply it: a new model and a report.

    Parameters
    ----------
    model, cfg : the dense model and its metadata (``cfg.name`` is compared with ``plan.model``).
    plan : the plan.
    data : calibration data for data-aware layers and gradient-based pruning scores, read only when the
        plan needs it: a dataset name (:func:`core.data.labelled_batch` of it), a batch ``(inputs, labels)``
        already at hand, or ``None`` (the model's own dataset).
    force : apply a plan made for other weights (the mismatch becomes a report warning). A plan made for
        another model is applied with a warning naming both when its paths exist in ``model``.

    Raises
    ------
    RankscopeError
        Data needed but none fits the model; the plan made for other weights (without ``force``);
        :class:`PlanError` listing every problem of the plan against the model (a plan for another model
        whose paths this model lacks among them).
    """
    warnings = []
    if plan.model != cfg.name:  # a warning where the plan fits this model's paths, else every missing path named
        message = f"plan was made for {plan.model}, this model is {cfg.name}"
        modules = dict(model.named_modules())
        missing = [p for p in plan.layers if p not in modules]
        if missing:
            raise PlanError([f"{message}: {missing[0]}: no such module in the model"]
                            + [f"{p}: no such module in the model" for p in missing[1:]])
        warnings.append(message)
    calibration = labels = None
    need_inputs, need_labels = data_needs(plan)
    if need_inputs:
        if data is None or isinstance(data, str):
            name = default_dataset(cfg, data)
            if not name:
                what = "labelled data (gradient-based pruning scores)" if need_labels else "calibration data (data-aware layers)"
                raise RankscopeError(f"the plan needs {what}: give it with --data")
            data = labelled_batch(name, cfg)
        calibration, labels = data
        if need_labels and bool((labels == NO_LABEL).any()):
            raise RankscopeError("the plan's taylor/hessian pruning scores need labelled calibration data, and this "
                                 "data has none (photos): use score l1 or lamp, or give labelled data with --data")
    new, report = apply_plan(model, plan, force=force, calibration=calibration, labels=labels, example=example_input(cfg, 1))
    report.warnings[:0] = warnings
    return new, report

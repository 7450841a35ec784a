"""From a model, calibration data and a budget to a plan and the compressed model, with every post-training step.

:func:`compress_to_budget` is what ``rankscope allocate`` does by default and what the Plan page and the benches
call: the ``whitened`` allocator (:mod:`core.sweep.whitened`) chooses an ``aa_svd`` rank per layer from each rank's
whitened truncation loss weighted by the output Fisher of the task's loss (no table, no whole-model evaluation),
the plan records the post-training steps (:class:`core.posttrain.PostTrain`), and applying it on the calibration
inputs runs them (:func:`core.plan.apply_plan`). Everything is learnt from the calibration data: nothing here
reads an evaluation split.

Without labels (a classifier on unlabelled photos) the Fisher weighting's loss is the cross-entropy against the
dense model's own top-1 predictions (:func:`fisher_data`): the same gradients a labelled set would give where the
model is right, with no label needed.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, Subset, TensorDataset, default_collate

from core.decompose.registry import get_method
from core.errors import RankscopeError
from core.layers import weighted_layers
from core.plan import ApplyReport, Plan, apply_plan
from core.plan.starting import tied_weights
from core.posttrain import PostTrain
from core.profile.quality import has_labels, task_for
from core.sweep.budget import Allocation, Problem, Target
from core.sweep.whitened import AWARE, WEIGHTING, whitened

CALIBRATION = 256  # calibration samples the post-training steps learn from
ALLOCATION_SAMPLES = 128  # calibration samples the allocator's losses are read from (every layer's inputs held at once)
RECONSTRUCT_STEPS = 200  # Adam steps per block of the default block reconstruction
RECONSTRUCT_LR = 3e-3  # MobileNetV2 at 90 % of its FLOPs, 400 steps: agreement 0.680 at 1e-3, 0.711 at 3e-3


def posttrain_settings(*, sequential: bool = True, bias: bool = True, batchnorm: str = "shift",
                       reconstruct: int = RECONSTRUCT_STEPS, lr: float = RECONSTRUCT_LR) -> PostTrain:
    """The default post-training steps, each of which can be turned off."""
    return PostTrain(sequential=sequential, bias=bias, batchnorm=batchnorm, reconstruct=reconstruct, lr=lr)


@dataclass
class Budgeted:
    """What :func:`compress_to_budget` returns: the allocation (its plan records the post-training steps), the
    compressed model and the report of applying the plan."""

    allocation: Allocation
    model: nn.Module
    report: ApplyReport

    @property
    def plan(self) -> Plan:
        """The plan, post-training steps included."""
        return self.allocation.plan


def _inputs(data: Dataset, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    subset = Subset(data, range(min(samples, len(data))))
    return default_collate([subset[i] for i in range(len(subset))])


def fisher_data(model: nn.Module, data: Dataset, samples: int = ALLOCATION_SAMPLES) -> Dataset:
    """The first ``samples`` items of ``data`` for the Fisher weighting: as they are when they carry targets, else
    (unlabelled inputs of a classifier) labelled with the dense model's own top-1 predictions."""
    subset = Subset(data, range(min(samples, len(data))))
    if has_labels(data) or task_for(data).name != "fidelity":
        return subset
    inputs, _ = _inputs(data, samples)
    with torch.no_grad():
        predicted = torch.cat([model(x).argmax(-1) for x in inputs.split(32)])
    return TensorDataset(inputs, predicted)


def aware_layers(model: nn.Module, layers: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Each layer ``aa_svd`` applies to (of ``layers``, default every weighted layer but those whose weight is tied to
    an earlier one's, such as a language model's head: factoring it would untie it), with ``[aa_svd]``.

    Raises
    ------
    RankscopeError
        A named layer that is not in the model or that ``aa_svd`` does not apply to; no layer at all.
    """
    method, modules, tied = get_method(AWARE), dict(model.named_modules()), tied_weights(model)
    chosen = {}
    for path in layers or [p for p in weighted_layers(model) if p not in tied]:
        module = modules.get(path) if path else None
        if module is None:
            raise RankscopeError(f"no layer named {path!r} in the model")
        reason = method.check(module)
        if reason is None:
            chosen[path] = [AWARE]
        elif layers:
            raise RankscopeError(f"{path}: {reason}")
    if not chosen:
        raise RankscopeError("no layer of this model takes aa_svd (a Linear or an ungrouped conv)")
    return chosen


def compress_to_budget(model: nn.Module, data: Dataset, target: Target, *, name: str, example: torch.Tensor,
                       steps: PostTrain | None = None, calibration: int = CALIBRATION,
                       allocation: int = ALLOCATION_SAMPLES, layers: Sequence[str] | None = None,
                       weighting: str = WEIGHTING, multiple: int = 1, times: Any = None,
                       progress: Callable[[int, int], None] | None = None) -> Budgeted:
    """The best plan rankscope makes for ``target`` from ``data``, and the model it gives.

    Parameters
    ----------
    model : the dense model (never modified).
    data : calibration data: ``(input, target)`` items (targets unused but by the Fisher weighting; unlabelled
        photos are fine). Only its first ``calibration`` items are read.
    target : the budget (FLOPs, parameters or latency; latency needs ``times``).
    name : the model's name, recorded in the plan.
    example : one model input ``(1, ...)``, to place the layers.
    steps : the post-training steps (default :func:`posttrain_settings`); ``core.posttrain.NONE`` for none.
    calibration : how many items of ``data`` the post-training steps learn from.
    allocation : how many of them (the first) the allocator reads (every layer's inputs on them are held at once).
    layers : the layers to compress (default every one ``aa_svd`` applies to).
    weighting : the whitened allocator's weighting (:data:`core.sweep.whitened.WEIGHTINGS`).
    multiple : ranks rounded to this multiple.
    times : :class:`core.speed.LayerTimes` for a latency target (and to report latency).
    progress : called with ``(blocks done, blocks)`` as the post-training steps walk the network.

    Raises
    ------
    RankscopeError
        No data, no layer ``aa_svd`` applies to, or what the allocator and ``apply_plan`` raise.
    """
    if len(data) == 0:
        raise RankscopeError("compressing to a budget learns from calibration data, and this data set is empty")
    steps = posttrain_settings() if steps is None else steps
    problem = Problem(model, name, example, target, layers=aware_layers(model, layers),
                      data=fisher_data(model, data, min(allocation, calibration)), times=times,
                      multiple=multiple)
    allocation = whitened(problem, weighting=weighting)
    plan = replace(allocation.plan, posttrain=steps if steps.active else None)
    allocation = replace(allocation, plan=plan)
    inputs, _ = _inputs(data, calibration)
    compressed, report = apply_plan(model, plan, calibration=inputs, example=example, progress=progress)
    return Budgeted(allocation, compressed, report)

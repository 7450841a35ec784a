"""What every task offers its callers: how to score model outputs and what loss to minimise.

A task is a plain object that satisfies :class:`Task`; callers (evaluation, sensitivity sweeps, allocators,
recovery fine-tuning) use only these members, so a new task (super-resolution PSNR/SSIM, language-model
perplexity) is one new module registered in :mod:`core.task.registry`. Each task reads its targets as the data
set gives them (class indices, HR images); the evaluation loops only move them to the device.
"""
from __future__ import annotations

from typing import Protocol

import torch

from core.task.metric import Metric


class Tally(Protocol):
    """Running totals of a task's metrics over batches; :meth:`result` gives the values over all of them."""

    seen: int
    """Number of samples added so far."""

    def add(self, outputs: torch.Tensor, targets: torch.Tensor, reference_outputs: torch.Tensor | None = None) -> None:
        """Count one batch.

        Parameters
        ----------
        outputs : the evaluated model's outputs for the batch.
        targets : the batch's targets as the data set gives them, collated: labels (``-1`` where a data set has
            none, :data:`core.task.labels.NO_LABEL`), or the high-resolution images of super-resolution.
        reference_outputs : the uncompressed model's outputs for the same inputs (tasks with
            ``needs_reference``).
        """

    def result(self) -> dict[str, float]:
        """``{metric name: value}`` over every sample added, for the names of the task's ``metrics``."""


class Task(Protocol):
    """How to judge a model's outputs.

    Attributes
    ----------
    name : registry name, e.g. ``"classification"``.
    metrics : the numbers a tally reports, in display order.
    headline : name of the metric to show first and to rank by.
    loss_metric : name of the metric that is the mean of :meth:`loss` over the samples (what sweeps and
        allocators read as the loss).
    needs_labels : whether targets must be real labels (not ``-1``).
    needs_reference : whether the uncompressed model's outputs must be passed too.
    fidelity : registry name of the task that scores against the uncompressed model's outputs on the same inputs
        (itself for such a task): its :meth:`loss` is the distillation term of recovery fine-tuning.
    """

    name: str
    metrics: tuple[Metric, ...]
    headline: str
    loss_metric: str
    needs_labels: bool
    needs_reference: bool
    fidelity: str

    def tally(self) -> Tally:
        """A fresh, empty accumulator of this task's metrics."""

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, reference_outputs: torch.Tensor | None = None) -> torch.Tensor:
        """A differentiable scalar to minimise (lower is better), the mean over the batch.

        Sensitivity sweeps, allocators and recovery fine-tuning use it in place of a fixed cross-entropy.
        """

"""Classification against labels: top-1, top-5 and mean cross-entropy of logits."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.task.labels import NO_LABEL
from core.errors import RankscopeError
from core.task.logits import check_logits
from core.task.metric import Metric

NAME = "classification"


def _labels(targets: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """``targets`` as (B,) int64 class indices on ``scores``' device, checked against the (B, classes) ``scores``."""
    labels = torch.as_tensor(targets, device=scores.device).long()
    if labels.shape != scores.shape[:1]:
        raise RankscopeError(f"the {NAME} task got {len(scores)} outputs but targets of shape {tuple(labels.shape)}")
    if bool((labels == NO_LABEL).any()):
        raise RankscopeError(f"the {NAME} task needs labels, but this data set has none: score it with the fidelity task")
    return labels


@dataclass
class ClassificationTally:
    """Running top-1 / top-5 hit counts and summed cross-entropy (the definitions of :class:`core.profile.accuracy.Tally`).

    ``top5`` is left out of :meth:`result` when the outputs have 5 classes or fewer (it would be 1 by construction).
    """

    seen: int = 0
    top1: int = 0
    top5: int = 0
    loss: float = 0.0
    has_top5: bool = False

    def add(self, outputs: torch.Tensor, targets: torch.Tensor, reference_outputs: torch.Tensor | None = None) -> None:
        """Count one batch: ``outputs`` (B, classes) logits, ``targets`` (B,) class indices; ``reference_outputs`` is unused.

        Raises
        ------
        RankscopeError
            Outputs that are not (B, classes) logits, a different number of targets, or unlabelled samples.
        """
        scores = check_logits(outputs, NAME).detach().float()  # (B, classes)
        labels = _labels(targets, scores)  # (B,)
        self.has_top5 = scores.shape[1] > 5
        hits = scores.topk(5 if self.has_top5 else 1, dim=1).indices == labels[:, None]  # (B, k)
        self.top1 += int(hits[:, 0].sum())
        self.top5 += int(hits.any(dim=1).sum())
        self.loss += float(F.cross_entropy(scores, labels, reduction="sum"))
        self.seen += len(labels)

    def result(self) -> dict[str, float]:
        """``top1`` and ``top5`` as fractions of the samples, ``loss`` (cross-entropy) as the mean in nats."""
        if not self.seen:
            raise RankscopeError(f"the {NAME} task has no samples to score")
        top5 = {"top5": self.top5 / self.seen} if self.has_top5 else {}
        return {"top1": self.top1 / self.seen, **top5, "loss": self.loss / self.seen}


class ClassificationTask:
    """Score a classifier's logits against integer labels.

    Metrics: ``top1`` (the highest logit is the label), ``top5`` (the label is among the five highest; reported
    only with more than 5 classes) and ``loss`` (mean cross-entropy of the outputs taken as logits), which is also the
    loss to minimise.
    """

    name = NAME
    metrics = (
        Metric("top1", True, "fraction of samples whose highest output is the label", fraction=True, label="top-1"),
        Metric("top5", True, "fraction of samples whose label is among the five highest outputs (more than 5 classes only)",
               fraction=True, label="top-5"),
        Metric("loss", False, "mean cross-entropy of the outputs taken as logits, in nats"),
    )
    headline = "top1"
    loss_metric = "loss"
    needs_labels = True
    needs_reference = False
    fidelity = "fidelity"

    def tally(self) -> ClassificationTally:
        """An empty :class:`ClassificationTally`."""
        return ClassificationTally()

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, reference_outputs: torch.Tensor | None = None) -> torch.Tensor:
        """Mean cross-entropy of ``outputs`` (B, classes) against ``targets`` (B,); ``reference_outputs`` is unused."""
        scores = check_logits(outputs, NAME).float()
        return F.cross_entropy(scores, _labels(targets, scores))

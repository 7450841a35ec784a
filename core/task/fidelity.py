"""Fidelity to the uncompressed model: how closely a compressed model's logits follow the original's.

Needs no labels, so it scores any classifier on any inputs (unlabelled photos included).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.errors import RankscopeError
from core.task.logits import check_logits
from core.task.metric import Metric

NAME = "fidelity"
OVERLAP_K = 5  # top-k of the overlap metric


def _pair(outputs: torch.Tensor, reference_outputs: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(outputs, reference_outputs)`` as float32 logits of one shape, or a RankscopeError saying why not."""
    if reference_outputs is None:
        raise RankscopeError(f"the {NAME} task compares with the original model: pass its outputs as reference_outputs")
    ref = check_logits(reference_outputs, NAME, "original model's outputs").float()
    out = check_logits(outputs, NAME).float()
    if out.shape != ref.shape:
        raise RankscopeError(
            f"the {NAME} task compares logits of the same shape, but the outputs have shape {tuple(out.shape)} "
            f"and the original model's {tuple(ref.shape)}"
        )
    return out, ref


def _kl_sum(outputs: torch.Tensor, reference_outputs: torch.Tensor) -> torch.Tensor:
    """Sum over the batch of KL(softmax(reference) ‖ softmax(outputs)) in nats, both (B, classes) float logits."""
    return F.kl_div(F.log_softmax(outputs, dim=1), F.log_softmax(reference_outputs, dim=1), reduction="sum", log_target=True)


@dataclass
class FidelityTally:
    """Running agreement counts, summed KL and pooled squared errors; :meth:`result` gives the metrics."""

    seen: int = 0
    agree: int = 0
    overlap: int = 0
    kl: float = 0.0
    error_sq: float = 0.0
    reference_sq: float = 0.0
    has_overlap: bool = False

    def add(self, outputs: torch.Tensor, targets: torch.Tensor, reference_outputs: torch.Tensor | None = None) -> None:
        """Count one batch of compressed ``outputs`` against the original's ``reference_outputs``; ``targets`` is unused.

        Raises
        ------
        RankscopeError
            No reference outputs, or outputs that are not (B, classes) logits of the reference's shape.
        """
        out, ref = (t.detach() for t in _pair(outputs, reference_outputs))
        self.has_overlap = out.shape[1] > OVERLAP_K
        k = OVERLAP_K if self.has_overlap else 1
        top_out, top_ref = out.topk(k, dim=1).indices, ref.topk(k, dim=1).indices  # (B, k) each, distinct per row
        self.agree += int((top_out[:, 0] == top_ref[:, 0]).sum())
        self.overlap += int((top_out[:, :, None] == top_ref[:, None, :]).sum())  # sum of |top-k ∩ top-k| over the batch
        self.kl += float(_kl_sum(out, ref))
        self.error_sq += float((out.double() - ref.double()).square().sum())
        self.reference_sq += float(ref.double().square().sum())
        self.seen += len(out)

    def result(self) -> dict[str, float]:
        """``agreement``, ``top5_overlap`` (more than 5 classes only), ``kl`` and ``relative_error`` over all samples."""
        if not self.seen:
            raise RankscopeError(f"the {NAME} task has no samples to score")
        if not self.reference_sq:
            raise RankscopeError(f"the {NAME} task's relative error is undefined: the original model's outputs are all zero")
        overlap = {"top5_overlap": self.overlap / (OVERLAP_K * self.seen)} if self.has_overlap else {}
        return {
            "agreement": self.agree / self.seen,
            **overlap,
            "kl": self.kl / self.seen,
            "relative_error": math.sqrt(self.error_sq / self.reference_sq),
        }


class FidelityTask:
    """Compare a compressed model's logits with the uncompressed model's on the same inputs; labels are ignored.

    Metrics, over the N samples scored:

    - ``agreement``: fraction of samples whose top-1 class is the original's top-1 class.
    - ``top5_overlap``: mean over samples of ``|top5(original) ∩ top5(compressed)| / 5``, the two sets of the
      five highest logits (order inside each set ignored; ties broken as ``torch.topk`` does). Reported only
      with more than 5 classes, where it is not 1 by construction.
    - ``kl``: mean over samples of KL(p_original ‖ p_compressed) of the softmax distributions, in nats.
    - ``relative_error``: ``||Y_c − Y_o||_F / ||Y_o||_F`` with Y the (N, classes) logits of the whole set,
      pooled (one ratio of sums over every sample), not a mean of per-sample ratios.

    The loss is the mean KL(p_original ‖ p_compressed), the distillation loss.
    """

    name = NAME
    metrics = (
        Metric("agreement", True, "fraction of samples whose top-1 class is the original model's", fraction=True,
               label="top-1 agreement"),
        Metric("top5_overlap", True, "mean |top-5 of the original ∩ top-5 of the compressed| / 5 (more than 5 classes only)",
               fraction=True, label="top-5 overlap"),
        Metric("kl", False, "mean KL(original ‖ compressed) of the softmax distributions, in nats", label="KL divergence"),
        Metric("relative_error", False, "||Y_compressed − Y_original||_F / ||Y_original||_F of the logits, pooled over the set",
               label="relative error"),
    )
    headline = "agreement"
    loss_metric = "kl"
    needs_labels = False
    needs_reference = True
    fidelity = "fidelity"

    def tally(self) -> FidelityTally:
        """An empty :class:`FidelityTally`."""
        return FidelityTally()

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, reference_outputs: torch.Tensor | None = None) -> torch.Tensor:
        """Mean KL(softmax(reference_outputs) ‖ softmax(outputs)) over the batch; ``targets`` is unused."""
        out, ref = _pair(outputs, reference_outputs)
        return _kl_sum(out, ref.detach()) / len(out)

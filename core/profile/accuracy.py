"""Top-1 / top-5 accuracy and mean cross-entropy of a classifier on a labelled dataset."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from core.errors import RankscopeError
from core.profile.checks import check_batch, check_device
from core.profile.context import prepared


class Cancelled(RankscopeError):
    """The caller's ``cancel`` callback asked an evaluation to stop; the message says how far it got."""


@dataclass(frozen=True)
class AccuracyResult:
    """Classification quality over ``samples`` examples.

    Attributes
    ----------
    top1 : fraction of examples whose highest output is the label.
    top5 : fraction whose label is among the five highest outputs; ``None`` when there are 5 classes or fewer.
    loss : mean cross-entropy of the outputs taken as logits.
    samples : number of examples evaluated.
    """

    top1: float
    top5: float | None
    loss: float
    samples: int


@dataclass
class Tally:
    """Running top-1 / top-5 / cross-entropy totals over batches of scores; :meth:`result` gives the means."""

    seen: int = 0
    top1: int = 0
    top5: int = 0
    loss: float = 0.0
    has_top5: bool = False

    def add(self, scores: torch.Tensor, labels: torch.Tensor) -> None:
        """Count one batch: ``scores`` (B, num_classes), ``labels`` (B,) class indices."""
        scores = scores.float()  # (B, num_classes)
        self.has_top5 = scores.shape[1] > 5
        hits = scores.topk(5 if self.has_top5 else 1, dim=1).indices == labels[:, None]  # (B, k)
        self.top1 += int(hits[:, 0].sum())
        self.top5 += int(hits.any(dim=1).sum())
        self.loss += float(F.cross_entropy(scores, labels, reduction="sum"))
        self.seen += len(labels)

    def result(self) -> AccuracyResult:
        return AccuracyResult(self.top1 / self.seen, self.top5 / self.seen if self.has_top5 else None, self.loss / self.seen, self.seen)


def evaluate(
    model: nn.Module,
    dataset: Any,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = False,
    cancel: Callable[[], bool] | None = None,
) -> AccuracyResult:
    """Run ``model`` over ``dataset`` in eval mode under ``torch.inference_mode`` and score it.

    Parameters
    ----------
    model : a classifier returning one score per class, shape ``(B, num_classes)``. The scores are taken
        as logits as given: for a model whose scores are not logits (e.g. a capsule network's capsule
        lengths) ``loss`` is the cross-entropy of those scores, comparable between versions of that
        model but not with other models; ``top1``/``top5`` only need the ranking and are unaffected.
    dataset : a ``torch.utils.data.Dataset`` (or anything with ``__len__`` and ``__getitem__``) yielding
        ``(image, label)``: a normalised float tensor and an int.
    batch_size : examples per forward pass (a ``DataLoader`` with ``num_workers=0``).
    device : ``"cpu"`` or ``"cuda[:N]"``; the model is moved there for the evaluation, then back.
    progress : show a ``tqdm`` progress bar.
    cancel : called before each batch; when it returns ``True`` the evaluation stops.

    Raises
    ------
    Cancelled
        ``cancel()`` returned ``True``.
    RankscopeError
        An empty dataset, a bad ``batch_size`` or device.
    """
    dev = check_device(device)
    loader = DataLoader(dataset, batch_size=check_batch(batch_size), shuffle=False, num_workers=0)
    total = len(dataset)
    if total == 0:
        raise RankscopeError("the evaluation dataset is empty")
    tally = Tally()
    with prepared(model, dev), torch.inference_mode():
        for images, labels in tqdm(loader, total=len(loader), disable=not progress, unit="batch", desc="evaluate"):
            if cancel is not None and cancel():
                raise Cancelled(f"evaluation cancelled after {tally.seen} of {total} samples")
            tally.add(model(images.to(dev)), torch.as_tensor(labels, device=dev).long())
    return tally.result()

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
    seen = correct1 = correct5 = 0
    loss_sum = 0.0
    top5: bool | None = None
    with prepared(model, dev), torch.inference_mode():
        for images, labels in tqdm(loader, total=len(loader), disable=not progress, unit="batch", desc="evaluate"):
            if cancel is not None and cancel():
                raise Cancelled(f"evaluation cancelled after {seen} of {total} samples")
            labels = torch.as_tensor(labels, device=dev).long()
            outputs = model(images.to(dev)).float()  # (B, num_classes)
            top5 = outputs.shape[1] > 5
            ranked = outputs.topk(5 if top5 else 1, dim=1).indices  # (B, k)
            hits = ranked == labels[:, None]
            correct1 += int(hits[:, 0].sum())
            correct5 += int(hits.any(dim=1).sum())
            loss_sum += float(F.cross_entropy(outputs, labels, reduction="sum"))
            seen += len(labels)
    return AccuracyResult(correct1 / seen, correct5 / seen if top5 else None, loss_sum / seen, seen)

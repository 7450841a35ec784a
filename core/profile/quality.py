"""A model's quality on a data set under a task (:mod:`core.task`): classification against labels, fidelity to
the uncompressed model's outputs on the same inputs, or the data set's own task (super-resolution)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from core.errors import RankscopeError
from core.profile.checks import check_batch, check_device
from core.profile.context import prepared
from core.profile.tiles import tiled_forward
from core.task import Scores, Task, get_task, scores_of


class Cancelled(RankscopeError):
    """The caller's ``cancel`` callback asked an evaluation to stop; the message says how far it got."""


def task_for(dataset: Any, task: str | Task | None = None) -> Task:
    """``task`` (a name or a task), else the data set's own task, else classification for labelled data and fidelity
    for unlabelled data.

    A data set names its task with ``task = "super-resolution-x2"`` and says it has no labels with
    ``has_labels = False`` (through a ``Subset`` too).
    """
    if task is not None:
        return get_task(task) if isinstance(task, str) else task
    own = dataset_attribute(dataset, "task", None)
    if own:
        return get_task(own)
    return get_task("classification" if has_labels(dataset) else "fidelity")


def dataset_attribute(dataset: Any, name: str, default: Any) -> Any:
    """The attribute ``name`` of ``dataset``, or of the data set under its ``Subset`` wrappers, else ``default``."""
    while not hasattr(dataset, name) and hasattr(dataset, "dataset"):  # a Subset of a Subset of ...
        dataset = dataset.dataset
    return getattr(dataset, name, default)


def has_labels(dataset: Any) -> bool:
    """Whether the items of ``dataset`` carry labels (``False`` for data sets that say ``has_labels = False``)."""
    return bool(dataset_attribute(dataset, "has_labels", True))


def batch_limit(dataset: Any, batch_size: int) -> int:
    """``batch_size``, or less for a data set that says ``max_batch`` (images of different sizes: 1)."""
    return min(check_batch(batch_size), dataset_attribute(dataset, "max_batch", batch_size))


def evaluate(
    model: nn.Module,
    dataset: Any,
    *,
    task: str | Task | None = None,
    reference: nn.Module | None = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = False,
    cancel: Callable[[], bool] | None = None,
) -> Scores:
    """Run ``model`` over ``dataset`` in eval mode under ``torch.inference_mode`` and score it under ``task``.

    Parameters
    ----------
    model : a classifier returning one score per class, shape ``(B, num_classes)``. The scores are taken
        as logits as given: for a model whose scores are not logits (e.g. a capsule network's capsule
        lengths) ``loss`` is the cross-entropy of those scores, comparable between versions of that
        model but not with other models; ``top1``/``top5`` only need the ranking and are unaffected. A
        super-resolution model returns images ``(B, 3, sH, sW)`` for its task.
    dataset : items ``(input, target)``: a label (``-1`` where the data set has none), or what the task scores
        against (the HR image of super-resolution); a data set of images of different sizes says ``max_batch = 1``, and
        one of images large enough to need it says ``tiling = (tile, margin)`` (:func:`core.profile.tiles.tiled_forward`).
    task : the task (default :func:`task_for` the data set).
    reference : the uncompressed model, for tasks that compare with it (fidelity).
    batch_size : examples per forward pass (a ``DataLoader`` with ``num_workers=0``; at most the data set's ``max_batch``).
    device : ``"cpu"`` or ``"cuda[:N]"``; the models are moved there for the evaluation, then back.
    progress : show a ``tqdm`` progress bar.
    cancel : called before each batch; when it returns ``True`` the evaluation stops.

    Raises
    ------
    Cancelled
        ``cancel()`` returned ``True``.
    RankscopeError
        An empty dataset, a bad ``batch_size`` or device, a task that needs a reference without one, outputs
        the task cannot score.
    """
    return evaluate_tasks(model, dataset, [task_for(dataset, task)], reference=reference, batch_size=batch_size,
                          device=device, progress=progress, cancel=cancel)[0]


def evaluate_tasks(
    model: nn.Module,
    dataset: Any,
    tasks: list[str | Task],
    *,
    reference: nn.Module | None = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = False,
    cancel: Callable[[], bool] | None = None,
) -> list[Scores]:
    """:func:`evaluate` under several tasks from one pass: each batch's outputs (and the reference's, computed
    only when a task needs them and ``reference`` is another model) feed every task's tally."""
    tasks = [get_task(t) if isinstance(t, str) else t for t in tasks]
    if any(t.needs_reference for t in tasks) and reference is None:
        name = next(t.name for t in tasks if t.needs_reference)
        raise RankscopeError(f"the {name} task compares with the original model: pass reference=")
    dev = check_device(device)
    loader = DataLoader(dataset, batch_size=batch_limit(dataset, batch_size), shuffle=False, num_workers=0)
    total = len(dataset)
    if total == 0:
        raise RankscopeError("the evaluation dataset is empty")
    tallies = [t.tally() for t in tasks]
    compare = any(t.needs_reference for t in tasks) and reference is not model
    tiling = dataset_attribute(dataset, "tiling", None)

    def run(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return tiled_forward(net, x, *tiling) if tiling else net(x)

    with prepared(model, dev), prepared(reference or model, dev), torch.inference_mode():
        for inputs, targets in tqdm(loader, total=len(loader), disable=not progress, unit="batch", desc="evaluate"):
            if cancel is not None and cancel():
                raise Cancelled(f"evaluation cancelled after {tallies[0].seen} of {total} samples")
            inputs = inputs.to(dev)
            outputs = run(model, inputs)
            wanted = run(reference, inputs) if compare else outputs
            targets = torch.as_tensor(targets, device=dev)  # labels or HR images: each task reads its own
            for task, tally in zip(tasks, tallies):
                tally.add(outputs, targets, wanted if task.needs_reference else None)
    return [scores_of(task, tally) for task, tally in zip(tasks, tallies)]

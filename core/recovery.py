"""Recovery after compression: BatchNorm re-calibration, then a short fine-tune distilled from the original.

A compressed model's BatchNorm layers still hold the running statistics of the dense model's
activations; :func:`recalibrate_batchnorm` re-estimates them on training data (forward passes
only). :func:`distill` then fine-tunes the compressed model (the student) to reproduce the original
(the teacher) on augmented training images: knowledge distillation (Hinton et al., 2015) mixed with
the label loss for classifiers; for other tasks (super-resolution) the training data's task says both
terms, its fidelity task's loss to the teacher's outputs (L1 to the original's images) and its own loss to
the targets (L1 to the HR patches) (:func:`recovery_loss`). :func:`recover` runs both steps and scores the
model before, between and after.

Every function returns a new model; the models passed in are never modified.

References
----------
Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural Network", 2015, arXiv:1503.02531.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from core.data.augment import augment_normalised, augment_pairs
from core.errors import RankscopeError
from core.models.capsnet import is_capsule_model, margin_loss
from core.profile import Cancelled, evaluate, has_labels, task_for
from core.task import Scores, Task, get_task
from core.profile.checks import check_device
from core.profile.context import prepared


@dataclass(frozen=True)
class RecoveryConfig:
    """Settings of :func:`recover` (and of :func:`distill`, which uses all but ``bn_batches``)."""

    steps: int = 1000  # fine-tune steps; 0 = BatchNorm re-calibration only
    batch_size: int = 128
    lr: float = 5e-3  # peak AdamW learning rate of the one-cycle schedule (1e-3 and 3e-3 recover less in 1000 steps)
    weight_decay: float = 0.0  # the factors start from a good point; decay would pull them off it
    temperature: float = 4.0  # softening of both models' logits in the distillation term
    alpha: float = 0.9  # weight of the distillation term; 1 - alpha goes to the label loss
    augment: bool = True  # random shift by up to 2 pixels and horizontal flip, the same for both models
    bn_batches: int = 50  # training batches whose statistics the BatchNorm layers average (20 do nearly as well)
    seed: int = 0  # order of the training batches and the augmentation

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be {rule}, got {value}"
            for name, value, ok, rule in (
                ("steps", self.steps, self.steps >= 0, "at least 0"),
                ("batch_size", self.batch_size, self.batch_size >= 1, "at least 1"),
                ("lr", self.lr, self.lr > 0, "positive"),
                ("weight_decay", self.weight_decay, self.weight_decay >= 0, "at least 0"),
                ("temperature", self.temperature, self.temperature > 0, "positive"),
                ("alpha", self.alpha, 0 <= self.alpha <= 1, "in [0, 1]"),
                ("bn_batches", self.bn_batches, self.bn_batches >= 1, "at least 1"),
            )
            if not ok
        ]
        if problems:
            raise RankscopeError("recovery settings: " + "; ".join(problems))


@dataclass(frozen=True)
class RecoveryResult:
    """What :func:`recover` did and how well each stage scores on the evaluation data.

    Attributes
    ----------
    model : the recovered compressed model (a new object, on the compressed model's device).
    original : the original (teacher) model's accuracy, the target to recover.
    before : the compressed model as given.
    after_bn : after BatchNorm re-calibration (equal to ``before`` when ``batchnorm_layers`` is 0).
    after : after the distillation fine-tune (equal to ``after_bn`` when ``steps`` is 0).
    batchnorm_layers : BatchNorm layers re-calibrated; 0 means the model has none and the step was skipped.
    steps : fine-tune steps run.
    seconds : wall time of re-calibration and fine-tune, evaluations excluded.
    """

    model: nn.Module
    original: Scores
    before: Scores
    after_bn: Scores
    after: Scores
    batchnorm_layers: int
    steps: int
    seconds: float


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model`` (any dimension), in module order."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def training_batches(data: Any, batch_size: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless shuffled ``(images, labels)`` batches of ``data``, reshuffled on every pass."""
    if len(data) == 0:
        raise RankscopeError("the training data is empty")
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=len(data) > batch_size,
                        generator=torch.Generator().manual_seed(seed), num_workers=0)
    while True:
        yield from loader


def _home(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def recalibrate_batchnorm(
    model: nn.Module,
    data: Any,
    *,
    batches: int = 50,
    batch_size: int = 128,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """A copy of ``model`` whose BatchNorm running statistics are re-estimated on ``data``.

    Each BatchNorm layer's running mean and variance are reset and replaced by their plain
    average over ``batches`` shuffled batches (``momentum=None``), run without gradients with only
    the BatchNorm layers in training mode (dropout and the rest stay in eval mode). Affine weights
    and every other parameter are unchanged. A model without BatchNorm comes back as an exact copy.

    Parameters
    ----------
    model : the model to re-calibrate (left untouched).
    data : a dataset of ``(normalised image, label)``, normally the training split; without labels (``-1``,
        e.g. photo crops) the loss is the teacher term alone, whatever ``config.alpha`` says.
    batches, batch_size : how many batches of what size the statistics average.
    seed : order of the batches.
    device : where the forward passes run; the copy is returned on ``model``'s device.
    """
    dev = check_device(device)
    new = copy.deepcopy(model).eval().to(dev)
    layers = batchnorm_layers(new)
    if not layers:
        return new.to(_home(model))
    momenta = [bn.momentum for bn in layers]
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average: every batch weighs the same
        bn.train()
    with torch.no_grad():
        for images, _ in islice(training_batches(data, batch_size, seed), batches):
            new(images.to(dev))
    for bn, momentum in zip(layers, momenta):
        bn.momentum = momentum
    return new.eval().to(_home(model))


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, *, temperature: float, alpha: float, capsule: bool = False
) -> torch.Tensor:
    """``alpha`` x (match the teacher) + (1 - ``alpha``) x (label loss), for a batch of outputs ``(B, classes)``.

    Logits: the teacher term is ``T^2 KL(softmax(t/T) || softmax(s/T))`` (the ``T^2`` keeps its gradient
    on the scale of the label cross-entropy). Capsule lengths in [0, 1) are not logits, and a softmax
    over them is nearly flat: the teacher term is then the squared distance between the two length
    vectors, and the label term the margin loss the capsule network was trained with.
    """
    if capsule:
        soft = ((student - teacher) ** 2).sum(1).mean()
    else:
        t = temperature
        soft = F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1), reduction="batchmean", log_target=True) * t * t
    if alpha == 1:  # the teacher term alone: the labels are not read (unlabelled data has none)
        return soft
    hard = margin_loss(student, labels) if capsule else F.cross_entropy(student, labels)
    return alpha * soft + (1 - alpha) * hard


def recovery_loss(
    task: Task, student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor, *, temperature: float, alpha: float,
    capsule: bool = False,
) -> torch.Tensor:
    """The fine-tune loss of one batch: ``alpha`` x (match the teacher) + (1 - ``alpha``) x (the task's own loss).

    Class scores ``(B, classes)`` (and capsule lengths) take :func:`distillation_loss`, with its temperature.
    Any other output (images of super-resolution) takes the losses ``task`` names: its fidelity task's
    :meth:`~core.task.Task.loss` against the teacher's outputs, and its own against ``targets``.

    Parameters
    ----------
    task : the training data's task (:func:`core.profile.task_for`).
    student, teacher : the two models' outputs for the batch (the teacher's without gradients).
    targets : the batch's targets: labels, or what the task scores against (HR images).
    temperature, alpha : as in :class:`RecoveryConfig`; ``alpha = 1`` never reads ``targets``.
    capsule : the outputs are capsule lengths.
    """
    if capsule or student.ndim == 2:
        return distillation_loss(student, teacher, targets.long(), temperature=temperature, alpha=alpha, capsule=capsule)
    soft = get_task(task.fidelity).loss(student, targets, teacher)
    if alpha == 1:
        return soft
    return alpha * soft + (1 - alpha) * task.loss(student, targets)


def distill(
    student: nn.Module,
    teacher: nn.Module,
    data: Any,
    config: RecoveryConfig = RecoveryConfig(),
    *,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> nn.Module:
    """A copy of ``student`` fine-tuned for ``config.steps`` steps to reproduce ``teacher`` (both left untouched).

    Each step draws a shuffled batch of ``data`` (augmented when ``config.augment``: image pairs of
    super-resolution with :func:`core.data.augment.augment_pairs`, classifier inputs with
    :func:`core.data.augment.augment_normalised`), runs the teacher in eval mode without gradients and the
    student in training mode, and takes an AdamW step on :func:`recovery_loss` under the data's task; the
    learning rate follows a one-cycle schedule (10 % warm-up to ``config.lr``, cosine decay to nearly zero).

    Parameters
    ----------
    student : the compressed model; the copy is returned in eval mode on the student's device.
    teacher : the original model, with the same inputs and outputs.
    data : a dataset of ``(normalised image, label)``, normally the training split; without labels (``-1``,
        e.g. photo crops) the loss is the teacher term alone, whatever ``config.alpha`` says.
    config : steps, batch size, learning rate, temperature, alpha, augmentation, seed.
    device : where the training runs (``"cpu"`` or ``"cuda[:N]"``).
    progress : called after every step with ``(steps done, steps in all)``.
    cancel : called before every step; when it returns ``True`` the fine-tune stops.

    Raises
    ------
    Cancelled
        ``cancel()`` returned ``True``.
    RankscopeError
        Empty data, an unavailable device, or a capsule network distilled from a logit model or back.
    """
    dev = check_device(device)
    capsule = is_capsule_model(teacher)
    if capsule != is_capsule_model(student):
        raise RankscopeError("distillation needs student and teacher with the same kind of output (logits or capsule lengths)")
    alpha = config.alpha if has_labels(data) else 1.0
    task = task_for(data)
    new = copy.deepcopy(student).to(dev).train()
    if config.steps == 0:
        return new.eval().to(_home(student))
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.AdamW(new.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.steps, pct_start=0.1)
    with prepared(teacher, dev):
        for step, (images, labels) in enumerate(islice(training_batches(data, config.batch_size, config.seed), config.steps)):
            if cancel is not None and cancel():
                raise Cancelled(f"fine-tune cancelled after {step} of {config.steps} steps")
            labels = torch.as_tensor(labels)  # (B,) labels, or (B, 3, sh, sw) HR images
            if config.augment and labels.ndim == images.ndim:
                images, labels = augment_pairs(images, labels, gen)
            elif config.augment:
                images = augment_normalised(images, gen)
            images, labels = images.to(dev), labels.to(dev)
            with torch.no_grad():
                target = teacher(images)  # (B, classes), or the original's images
            loss = recovery_loss(task, new(images), target, labels, temperature=config.temperature, alpha=alpha,
                                 capsule=capsule)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if progress is not None:
                progress(step + 1, config.steps)
    return new.eval().to(_home(student))


def recover(
    original: nn.Module,
    compressed: nn.Module,
    train_data: Any,
    eval_data: Any,
    config: RecoveryConfig = RecoveryConfig(),
    *,
    task: str | Task | None = None,
    eval_batch: int = 256,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> RecoveryResult:
    """Re-calibrate ``compressed``'s BatchNorm on ``train_data``, distill it from ``original``, score every stage.

    Parameters
    ----------
    original : the uncompressed model, the teacher (left untouched).
    compressed : the compressed model, e.g. from :func:`core.plan.apply_plan` (left untouched).
    train_data : training data for re-calibration and fine-tune, labels or not (keep the evaluation data out of it).
    eval_data : the data the scores are measured on.
    task : how they are scored (default: classification for labelled ``eval_data``, fidelity to ``original`` otherwise).
    config : the recovery settings (:class:`RecoveryConfig`).
    eval_batch : batch size of the evaluations.
    device : where everything runs.
    progress, cancel : passed to :func:`distill` (``cancel`` also to the evaluations).

    Returns
    -------
    RecoveryResult
        The recovered model and the scores of the original and of the compressed model before,
        after re-calibration and after fine-tune.
    """
    task = task_for(eval_data, task)

    def score(model: nn.Module) -> Scores:
        return evaluate(model, eval_data, task=task, reference=original, batch_size=eval_batch, device=device, cancel=cancel)

    start = time.perf_counter()
    calibrated = recalibrate_batchnorm(compressed, train_data, batches=config.bn_batches, batch_size=config.batch_size,
                                       seed=config.seed, device=device)
    tuned = distill(calibrated, original, train_data, config, device=device, progress=progress, cancel=cancel)
    seconds = time.perf_counter() - start
    count = len(batchnorm_layers(compressed))
    before = score(compressed)
    after_bn = score(calibrated) if count else before
    return RecoveryResult(
        model=tuned, original=score(original), before=before, after_bn=after_bn,
        after=score(tuned) if config.steps else after_bn, batchnorm_layers=count, steps=config.steps, seconds=seconds,
    )

"""Integral fine-tuning: train a network to stay accurate when resampled to any width.

Integral Neural Networks train with a random sampling density per step, so that the weights become
smooth functions of the channel coordinate and every resampled width works. Here a trained model is
fine-tuned that way (INN's "integral fine-tuning" of a pretrained net): its channels are first
ordered smoothly (:func:`core.resample.order.order_model`, the same function), then every step takes

    distill(full-width model) + distill(model resampled at density d ~ U(min, max), every group)
        [+ distill(model resampled at min), the sandwich rule of slimmable networks],

both distilled from the original model (:func:`core.recovery.distillation_loss`); the resampled
forward runs :func:`torch.func.functional_call` on the output of
:func:`core.resample.resample.resampled_state`, so its gradient reaches the full-width weights.

BatchNorm stays in eval mode (running statistics frozen, affine parameters trained): one set of
statistics has to serve every density, and the resampled ones are interpolated from it.

The result keeps the channel order it was trained in: resample it with ``order=False``.

``python -m core.resample.integral`` builds the shipped ``fmnist-resnet-integral`` (see :func:`main`).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save
from torch import nn
from torch.func import functional_call

from core.data import load_dataset
from core.data.augment import augment_normalised
from core.errors import RankscopeError
from core.io import atomic_write_bytes, atomic_write_text
from core.models import create_model
from core.models.capsnet import is_capsule_model
from core.models.registry import SHIPPED_DIR
from core.profile import evaluate
from core.profile.context import prepared
from core.profile.counts import FLOP_CONVENTION, count_flops, count_params
from core.profile.report import example_input
from core.recovery import distillation_loss, training_batches
from core.resample.groups import channel_groups
from core.resample.order import order_model
from core.resample.resample import new_size, resample_model, resampled_state, shrunk_copy
from core.train import library_versions


@dataclass(frozen=True)
class IntegralConfig:
    """Settings of :func:`integral_finetune`."""

    steps: int = 1500
    batch_size: int = 128
    lr: float = 1e-3  # peak AdamW learning rate of the one-cycle schedule (the weights start trained)
    min_density: float = 0.3  # each step resamples every group at a density drawn from U(min, max)
    max_density: float = 1.0
    temperature: float = 4.0
    alpha: float = 0.9  # weight of the distillation term; 1 - alpha goes to the label loss
    augment: bool = True  # random shift by up to 2 pixels and horizontal flip
    sandwich: bool = True  # also train at min_density every step (slimmable nets' sandwich rule): the narrowest widths need it most
    draws: int = 1  # random densities per step
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0 or self.draws < 1:
            raise RankscopeError(f"integral fine-tune needs steps, batch_size, draws >= 1 and lr > 0, got {self.steps}, "
                                 f"{self.batch_size}, {self.draws}, {self.lr}")
        if not 0 < self.min_density <= self.max_density <= 1:
            raise RankscopeError(f"densities must satisfy 0 < min <= max <= 1, got {self.min_density}, {self.max_density}")


def integral_finetune(
    model: nn.Module,
    train_data: Any,
    example: torch.Tensor,
    config: IntegralConfig = IntegralConfig(),
    *,
    progress: Callable[[int, int, float], None] | None = None,
) -> nn.Module:
    """A copy of ``model``, channels ordered, fine-tuned to stay accurate at every density (``model`` untouched).

    Parameters
    ----------
    model : the trained network, also the distillation teacher.
    train_data : a dataset of ``(normalised image, label)``, normally the training split.
    example : an input batch for tracing the channel groups.
    config : steps, batch size, learning rate, density range, distillation settings, seed.
    progress : called after every step with ``(steps done, steps in all, loss)``.

    Returns
    -------
    nn.Module
        The fine-tuned full-width model in eval mode; resample it with ``order=False``.
    """
    groups = channel_groups(model, example)
    student = order_model(model, groups)[0].eval()
    capsule = is_capsule_model(model)
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.steps, pct_start=0.1)
    skeletons: dict[tuple[int, ...], nn.Module] = {}  # smaller models by their widths; functional_call fills their tensors

    def loss_of(out: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return distillation_loss(out, target, labels, temperature=config.temperature, alpha=config.alpha, capsule=capsule)

    with prepared(model, torch.device("cpu")) as teacher:  # eval mode for the run, the caller's modes restored after
        for step, (images, labels) in enumerate(islice(training_batches(train_data, config.batch_size, config.seed), config.steps)):
            if config.augment:
                images = augment_normalised(images, gen)
            labels = torch.as_tensor(labels).long()
            with torch.no_grad():
                target = teacher(images)  # (B, classes)
            span = config.max_density - config.min_density
            drawn = [config.min_density + span * float(torch.rand((), generator=gen)) for _ in range(config.draws)]
            loss = loss_of(student(images), target, labels)
            for density in drawn + [config.min_density] * config.sandwich:
                state = resampled_state(student.state_dict(keep_vars=True), groups, {name: density for name in groups})
                widths = tuple(new_size(g.size, density) for g in groups.values())
                if widths not in skeletons:
                    skeletons[widths] = shrunk_copy(student, state).eval()
                loss = loss + loss_of(functional_call(skeletons[widths], state, (images,)), target, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if progress is not None:
                progress(step + 1, config.steps, loss.item())
    return student.eval()


def main(argv: list[str] | None = None) -> dict:
    """Build ``fmnist-resnet-integral``: integral fine-tune of the shipped fmnist-resnet, weights and card written.

    ``python -m core.resample.integral [--steps N] [--out DIR] [--threads T]``; returns the card.
    """
    parser = argparse.ArgumentParser(prog="python -m core.resample.integral", description=main.__doc__)
    parser.add_argument("--steps", type=int, default=IntegralConfig.steps)
    parser.add_argument("--out", type=Path, default=SHIPPED_DIR / "fmnist-resnet-integral")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=IntegralConfig.lr)
    parser.add_argument("--draws", type=int, default=IntegralConfig.draws, help="random densities per step")
    parser.add_argument("--no-sandwich", dest="sandwich", action="store_false", help="do not also train at the minimum density")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = IntegralConfig(steps=args.steps, lr=args.lr, seed=args.seed, draws=args.draws, sandwich=args.sandwich)
    model, cfg = create_model("fmnist-resnet")
    example = example_input(cfg)
    start = time.time()

    def log(step: int, total: int, loss: float) -> None:
        if step % 100 == 0 or step == total:
            print(f"step {step}/{total}  loss {loss:.4f}  {time.time() - start:.0f}s", flush=True)

    tuned = integral_finetune(model, load_dataset("fashion-mnist", cfg, split="train"), example, config, progress=log)
    seconds = time.time() - start
    test = load_dataset("fashion-mnist", cfg)
    at_density = {}
    for d in (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3):
        groups = channel_groups(tuned, example)
        small = resample_model(tuned, example, {n: d for n in groups}, order=False)[0]
        at_density[str(d)] = round(evaluate(small, test, batch_size=500)["top1"], 4)
        print(f"density {d}: top-1 {at_density[str(d)]}", flush=True)
    command = (f"python -m core.resample.integral --steps {args.steps} --lr {args.lr} --seed {args.seed} --threads {args.threads}"
               f" --draws {args.draws}" + ("" if args.sandwich else " --no-sandwich"))
    card = {
        "name": "fmnist-resnet-integral",
        "dataset": "fashion-mnist",
        "test_accuracy": at_density["1.0"],
        "test_samples": len(test),
        "params": count_params(tuned),
        "flops_per_image": count_flops(tuned, example).total,
        "flop_convention": FLOP_CONVENTION,
        "finetuned_from": "fmnist-resnet (the shipped weights; integral fine-tuning, not training from scratch)",
        "train_config": asdict(config),
        "train_seconds": round(seconds, 1),
        "resampled_test_accuracy": at_density,  # every channel group at that density, order=False, no fine-tune
        "resampling": "channels are stored in their trained order: resample with core.resample.resample_model(..., order=False)",
        "command": command,
        "versions": library_versions(),
        "machine": f"{platform.machine()} CPU, {args.threads} threads",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out / "model.safetensors", save({k: v.contiguous() for k, v in tuned.state_dict().items()}))
    atomic_write_text(args.out / "card.json", json.dumps(card, indent=2) + "\n")
    return card


if __name__ == "__main__":
    main()

"""Train the shipped Fashion-MNIST models from scratch, reproducibly, on a CPU.

``rankscope train fmnist-resnet`` writes ``assets/models/fmnist-resnet/model.safetensors`` and a
``card.json`` with the test accuracy on the full 10,000-image split, parameters, FLOPs, the command,
the seed and library versions.
"""
from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import timm
import torch
import torchvision
from safetensors.torch import save
from torch import nn

from core.data.augment import augment_batch
from core.data.fashion_mnist import load_fashion_mnist
from core.io import atomic_write_bytes, atomic_write_text
from core.models import create_model
from core.models.capsnet import margin_loss
from core.profile.counts import FLOP_CONVENTION, count_flops, count_params


@dataclass
class TrainConfig:
    """Hyperparameters of one training run (defaults per model in :data:`RECIPES`)."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-3  # peak AdamW learning rate of the one-cycle schedule
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    augment: bool = True  # random shift by up to 2 pixels and horizontal flip
    seed: int = 0
    threads: int = 2


RECIPES: dict[str, TrainConfig] = {
    "fmnist-resnet": TrainConfig(epochs=20, lr=3e-3, weight_decay=5e-4, label_smoothing=0.05),
    "fmnist-vit": TrainConfig(epochs=25, lr=2e-3, weight_decay=0.05, label_smoothing=0.05, augment=False),
    "fmnist-capsnet": TrainConfig(epochs=8, lr=2e-3, weight_decay=0.0),
}


def normalize(images_u8: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 images (B, C, H, W) -> float, scaled to [0, 1] and standardised per channel."""
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return (images_u8.float() / 255.0 - m) / s


@torch.no_grad()
def evaluate_tensors(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    """Top-1 accuracy of ``model`` on already normalised tensors."""
    model.eval()
    correct = sum(int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum()) for i in range(0, len(x), batch))
    return correct / len(x)


def train(name: str, cfg: TrainConfig, out_dir: Path, log=print) -> dict:
    """Train model ``name`` from random init with ``cfg``; write weights and card to ``out_dir``; return the card."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    gen = torch.Generator().manual_seed(cfg.seed)
    model, mcfg = create_model(name, pretrained=False)
    xtr_u8, ytr = load_fashion_mnist("train")
    xte = normalize(*load_fashion_mnist("test")[:1], mcfg.mean, mcfg.std)
    yte = load_fashion_mnist("test")[1]
    steps_per_epoch = math.ceil(len(xtr_u8) / cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.15)
    capsule = name.endswith("capsnet")
    ce = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    t0 = time.time()
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(xtr_u8), generator=gen)
        total = 0.0
        for i in range(steps_per_epoch):
            idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            xb = xtr_u8[idx]
            if cfg.augment:
                xb = augment_batch(xb, gen)
            out = model(normalize(xb, mcfg.mean, mcfg.std))
            loss = margin_loss(out, ytr[idx]) if capsule else ce(out, ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        acc = evaluate_tensors(model, xte, yte)
        log(f"epoch {epoch + 1}/{cfg.epochs}  loss {total / steps_per_epoch:.4f}  test acc {acc:.4f}  {time.time() - t0:.0f}s")
    model.eval()
    acc = evaluate_tensors(model, xte, yte)
    flops = count_flops(model, xte[:1])
    card = {
        "name": name,
        "dataset": "fashion-mnist",
        "test_accuracy": round(acc, 4),
        "test_samples": len(yte),
        "params": count_params(model),
        "flops_per_image": flops.total,
        "flop_convention": FLOP_CONVENTION,
        "train_config": asdict(cfg),
        "train_seconds": round(time.time() - t0, 1),
        "command": f"rankscope train {name} --epochs {cfg.epochs} --seed {cfg.seed} --threads {cfg.threads}",
        "versions": library_versions(),
        "machine": f"{platform.machine()} CPU, {cfg.threads} threads",
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(out_dir / "model.safetensors", save(state))
    atomic_write_text(out_dir / "card.json", json.dumps(card, indent=2) + "\n")
    return card


def library_versions() -> dict[str, str]:
    """The versions a model card records: ``python``, ``torch``, ``torchvision`` and ``timm``."""
    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "timm": timm.__version__}

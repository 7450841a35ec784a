"""Shared fixtures of the pruning tests: the shipped Fashion-MNIST models, their inputs and calibration batches."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from core.models import create_model
from core.profile.report import example_input
from core.data import labelled_batch


@pytest.fixture(scope="session")
def resnet() -> tuple[nn.Module, torch.Tensor]:
    """The trained fmnist-resnet and a seeded example batch of 2."""
    model, cfg = create_model("fmnist-resnet")
    return model, example_input(cfg, batch=2)


@pytest.fixture(scope="session")
def vit() -> tuple[nn.Module, torch.Tensor]:
    model, cfg = create_model("fmnist-vit")
    return model, example_input(cfg, batch=2)


@pytest.fixture(scope="session")
def calibration() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Two labelled batches of 16 Fashion-MNIST training images, normalised for the shipped models."""
    _, cfg = create_model("fmnist-resnet", pretrained=False)
    images, labels = labelled_batch(cfg.dataset, cfg, 32)
    return [(images[:16], labels[:16]), (images[16:], labels[16:])]

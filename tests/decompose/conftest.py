"""Shared fixtures of the decomposition tests: real calibration data."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from core.data.fashion_mnist import load_fashion_mnist


@pytest.fixture(scope="session")
def fashion() -> torch.Tensor:
    """512 real Fashion-MNIST test images, (512, 1, 28, 28) in [0, 1]."""
    images, _ = load_fashion_mnist("test")
    return images[:512].float() / 255.0


@pytest.fixture(scope="session")
def real_features(fashion) -> torch.Tensor:
    """Real images through a fixed random 3x3 conv + ReLU: (512, 12, 28, 28) inputs for a conv under test."""
    torch.manual_seed(0)
    stem = nn.Conv2d(1, 12, 3, padding=1)
    with torch.no_grad():
        return torch.relu(stem(fashion))


"""Shared fixtures of the sweep tests: fmnist-resnet, a small evaluation subset and one sweep table of it."""
from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from core.data import eval_subset, load_dataset
from core.models import create_model
from core.sweep import sweep

SAMPLES = 64


@pytest.fixture(scope="session")
def resnet() -> tuple[nn.Module, object]:
    return create_model("fmnist-resnet")


@pytest.fixture(scope="session")
def subset(resnet):
    return eval_subset(load_dataset("fashion-mnist", resnet[1]), SAMPLES)


@pytest.fixture(scope="session")
def example(resnet) -> torch.Tensor:
    from core.profile import example_input

    return example_input(resnet[1], 1)


@pytest.fixture(scope="session")
def table(resnet, subset) -> pd.DataFrame:
    """Every compressible layer at 5 ranks (no disk cache)."""
    return sweep(resnet[0], subset, points=5, batch_size=32)

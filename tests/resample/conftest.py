"""Shared fixtures of the resampling tests: the models with their example inputs, traced once."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from core.models import create_model
from core.profile.report import example_input
from core.resample.groups import ChannelGroup, channel_groups

MODELS = ["fmnist-resnet", "fmnist-vit", "fmnist-capsnet", "timm:resnet18"]


@pytest.fixture(scope="session")
def zoo() -> dict[str, tuple[nn.Module, torch.Tensor, dict[str, ChannelGroup]]]:
    """Each model of :data:`MODELS` with an example batch of two and its channel groups.

    timm:resnet18 (random init) runs on 64x64 inputs to keep the tests fast; its groups do not depend on the size.
    """
    out = {}
    for name in MODELS:
        model, cfg = create_model(name)
        example = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) if name.startswith("timm:") else example_input(cfg, 2)
        out[name] = (model, example, channel_groups(model, example))
    return out

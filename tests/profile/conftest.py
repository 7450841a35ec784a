"""Shared fixtures of the profiler tests: the tiny conv net and its cfg."""
from __future__ import annotations

import pytest
from torch import nn

from core.models.cfg import ModelCfg
from profile_helpers import tiny_net as build_tiny_net


@pytest.fixture
def tiny_net() -> nn.Sequential:
    return build_tiny_net()


@pytest.fixture
def tiny_cfg() -> ModelCfg:
    return ModelCfg("tiny", (3, 8, 8), 10)

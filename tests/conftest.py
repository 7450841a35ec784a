"""Fixtures every test folder shares: one torch thread, the device under test, and seeded tiny models.

Folder conftests keep what only their folder uses (the shipped models, real data, a Streamlit page).
The device is ``$RANKSCOPE_TEST_DEVICE`` (default ``cpu``): ``RANKSCOPE_TEST_DEVICE=cuda pytest`` runs the
device-aware tests on a GPU, and fails at once where none is present rather than skipping.
"""
from __future__ import annotations

import os

import pytest
import torch
from timm.layers import Attention
from torch import nn

from core.models.cfg import ModelCfg
from tests.helpers import DIM, HEADS, TINY_INPUT, TOKENS
from tests.helpers import tiny_net as build_tiny_net


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """The whole session, session-scoped fixtures included, runs on one torch thread; the count is restored at the end."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _one_thread_per_test(one_torch_thread):
    """Every test starts on one thread, whatever the test before it set."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def device() -> torch.device:
    """The device under test: ``$RANKSCOPE_TEST_DEVICE``, default cpu."""
    name = os.environ.get("RANKSCOPE_TEST_DEVICE", "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.fail(f"RANKSCOPE_TEST_DEVICE={name}, but torch sees no CUDA device", pytrace=False)
    return dev


@pytest.fixture
def tiny_net() -> nn.Sequential:
    """tests.helpers.tiny_net: a seeded conv + linear net on 3x8x8 inputs, 10 outputs, eval mode."""
    return build_tiny_net()


@pytest.fixture
def tiny_cfg() -> ModelCfg:
    return ModelCfg("tiny", TINY_INPUT, 10)


@pytest.fixture
def timm_attn() -> Attention:
    """A seeded timm Attention shaped like fmnist-vit's (width DIM, HEADS heads), eval mode."""
    torch.manual_seed(0)
    return Attention(DIM, HEADS, qkv_bias=True).eval()


@pytest.fixture
def tokens() -> torch.Tensor:
    """(2, TOKENS, DIM) inputs for timm_attn, seeded."""
    return torch.randn(2, TOKENS, DIM, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="session")
def smollm2():
    """``(model, cfg)`` of the real smollm2-135m, loaded once per session (slow tests only: about 20 s the first time
    it is dequantised from its GGUF file, a few seconds from the cache after that). Tests must not change it."""
    from core.models import create_model

    return create_model("smollm2-135m")

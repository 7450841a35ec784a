"""Shared fixtures of the attention tests: a seeded timm Attention shaped like fmnist-vit's, and tokens for it."""
from __future__ import annotations

import pytest
import torch
from timm.layers import Attention

from attention_helpers import DIM, HEADS, TOKENS


@pytest.fixture(autouse=True)
def one_thread():
    """Tests run on one thread, as the project's test suite does; the count is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def timm_attn() -> Attention:
    torch.manual_seed(0)
    return Attention(DIM, HEADS, qkv_bias=True).eval()


@pytest.fixture
def tokens() -> torch.Tensor:
    return torch.randn(2, TOKENS, DIM, generator=torch.Generator().manual_seed(1))

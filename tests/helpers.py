"""What tests in several folders share besides fixtures: the seeded tiny models and their known sizes and costs.

The fixtures that hand these out (``tiny_net``, ``tiny_cfg``, ``timm_attn``, ``tokens``) are in tests/conftest.py;
import the constants as ``from tests.helpers import ...``. Helpers of one folder are ``tests/<folder>/helpers.py``.
"""
from __future__ import annotations

import torch
from torch import nn

# tiny_net: Conv2d(3, 8, 3, padding=1) on 3x8x8 -> ReLU -> flatten to 512 -> Linear(512, 10)
TINY_INPUT = (3, 8, 8)
CONV_FLOPS = 2 * 8 * 3 * 3 * 3 * 8 * 8  # Conv2d(3, 8, 3, padding=1) on 8x8: 2 * Cout * Cin * k * k * Hout * Wout
LINEAR_FLOPS = 2 * 512 * 10  # Linear(512, 10): 2 * in * out
TINY_PARAMS = (8 * 3 * 3 * 3 + 8) + (512 * 10 + 10)

DIM, HEADS, TOKENS = 64, 4, 50  # timm_attn, shaped like fmnist-vit's: width 64, 4 heads, 49 patches + the class token


def tiny_net() -> nn.Sequential:
    """Conv2d(3, 8, 3, padding=1) on 3x8x8, flattened to 512, then Linear(512, 10); seeded, eval mode."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(512, 10)).eval()


def tiny_llama(**config):
    """A seeded (``torch.manual_seed(0)``) transformers ``LlamaForCausalLM`` in eval mode: by default 2 layers of width 32,
    4 query heads on 2 key/value heads (grouped-query attention), SwiGLU 64, vocabulary 64, context 64, tied
    embeddings; ``config`` overrides any ``LlamaConfig`` field."""
    from transformers import LlamaConfig, LlamaForCausalLM

    fields = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=True) | config
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**fields)).eval()

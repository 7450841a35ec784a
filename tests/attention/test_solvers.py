"""The factorization variants: objectives never increase, and the one-step gradient keeps the graph flat."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.attention import swap_attention
from core.attention._ham import random_bases
from core.attention.nmf import nmf
from core.attention.ntf import ntf
from core.attention.pnmf import pnmf


def solve(name: str, x: torch.Tensor, steps: int, seed: int) -> list[float]:
    """The objective history of solver ``name`` on ``x`` (B, h, N, d) at rank 8 from seeded bases."""
    gen = torch.Generator().manual_seed(seed)
    B, h, _, d = x.shape
    history: list[float] = []
    if name == "nmf":
        nmf(x, random_bases((B, h, d, 8), gen).to(x), steps, history=history)
    elif name == "pnmf":
        pnmf(x, random_bases((B, h, d, 8), gen).to(x), steps, history=history)
    else:
        ntf(x, random_bases((B, h, 8), gen).to(x), random_bases((B, d, 8), gen).to(x), steps, history=history)
    return history


@pytest.mark.parametrize("name", ["nmf", "pnmf", "ntf"])
@pytest.mark.parametrize("scale", [0.1, 1.0, 10.0])
def test_objective_never_increases(name, scale):
    for seed in range(5):
        x = torch.relu(torch.randn(2, 4, 50, 16, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)) * scale
        history = np.array(solve(name, x, 30, seed))
        assert len(history) == 31
        assert (np.diff(history) <= 1e-9 * history[0]).all(), history
        assert history[-1] < 0.9 * history[0]


def graph_size(t: torch.Tensor) -> int:
    """Autograd nodes reachable from ``t.grad_fn``."""
    seen, stack = set(), [t.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(n for n, _ in node.next_functions)
    return len(seen)


@pytest.mark.parametrize("name", ["nmf", "pnmf", "ntf"])
def test_one_step_gradient_graph_does_not_grow_with_steps(name, timm_attn, tokens):
    sizes = {}
    for steps in (2, 10):
        for one_step in (True, False):
            module = swap_attention(timm_attn, name, steps=steps, one_step=one_step)
            sizes[steps, one_step] = graph_size(module(tokens).sum())
    assert sizes[2, True] == sizes[10, True]
    assert sizes[10, False] > sizes[2, False] > sizes[2, True]


@pytest.mark.parametrize("name", ["nmf", "pnmf", "ntf"])
def test_eval_is_deterministic_and_training_redraws_the_init(name, timm_attn, tokens):
    module = swap_attention(timm_attn, name)
    with torch.no_grad():
        assert torch.equal(module(tokens), module(tokens))
        module.train()
        assert not torch.equal(module(tokens), module(tokens))

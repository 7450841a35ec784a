"""The FLOPs rankscope reports equal an analytic count of the convs and linears (within 1 %)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from core.models import create_model
from core.profile.counts import count_flops


def analytic_flops(model: nn.Module, x: torch.Tensor) -> int:
    """2 x multiply-adds of every Conv2d and Linear, from their shapes and the output sizes seen in one pass."""
    total = 0

    def hook(module, _inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += 2 * output.numel() * (module.in_channels // module.groups) * kh * kw
        else:
            total += 2 * output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total


@pytest.mark.parametrize("name", ["fmnist-resnet", "fmnist-vit"])
def test_reported_flops_match_the_analytic_count(name):
    model, cfg = create_model(name)
    x = torch.zeros(1, *cfg.input_size)
    measured, expected = count_flops(model, x).total, analytic_flops(model, x)
    # convs and linears are all FLOPs for the resnet; the ViT adds attention's two matmuls (2*2*N*N*C per block)
    if name == "fmnist-vit":
        n, c = 50, model.embed_dim
        expected += len(model.blocks) * 2 * 2 * n * n * c
    assert abs(measured - expected) / expected < 0.01

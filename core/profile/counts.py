"""Exact counts: parameters, model size, and FLOPs from ``torch.utils.flop_counter``.

Convention: one multiply-add is 2 FLOPs (what ``FlopCounterMode`` counts for conv and matmul).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

FLOP_CONVENTION = "1 multiply-add = 2 FLOPs (torch.utils.flop_counter)"


def count_params(module: nn.Module) -> int:
    """Number of parameter elements (shared parameters counted once)."""
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())


def model_size_mb(module: nn.Module) -> float:
    """Bytes of parameters and buffers, in MB (10^6 bytes), as they would be saved."""
    tensors = {id(t): t for t in list(module.parameters()) + list(module.buffers())}.values()
    return sum(t.numel() * t.element_size() for t in tensors) / 1e6


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one forward pass: ``total`` and a per-module breakdown keyed by module path ("" = whole model)."""

    total: int
    by_module: dict[str, int]
    batch_size: int

    @property
    def per_sample(self) -> float:
        return self.total / self.batch_size


def _sdpa_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of the CPU fused attention kernel: the same two matmuls torch counts for the CUDA kernels."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# torch's counter knows the CUDA fused-attention ops but not the CPU one, so a ViT's attention would count 0.
EXTRA_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flop}


def count_flops(model: nn.Module, example: torch.Tensor) -> FlopCount:
    """Count the FLOPs of ``model(example)`` with ``FlopCounterMode``; per-module totals include children.

    Module paths are the ``named_modules`` names (the counter's ``Global`` and root-class prefixes are removed).
    """
    counter = FlopCounterMode(display=False, custom_mapping=EXTRA_FORMULAS)
    with torch.no_grad(), counter:
        model(example)
    by_module: dict[str, int] = {}
    root = type(model).__name__  # the counter names the root module by its class and children "<Class>.<path>"
    for key, ops in counter.get_flop_counts().items():
        path = key.removeprefix("Global").removeprefix(".")
        if path in ("", root):
            continue
        by_module[path.removeprefix(f"{root}.")] = int(sum(ops.values()))
    by_module[""] = int(counter.get_total_flops())
    return FlopCount(int(counter.get_total_flops()), by_module, int(example.shape[0]))

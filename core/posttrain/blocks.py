"""Block reconstruction: each block of the compressed network optimised to reproduce the dense block's output.

After factorization, a block (a residual or inverted-residual block, a transformer layer, a conv stage) is a small
network whose parameters (factors, biases, BatchNorm affine) can be tuned by gradient descent on unlabelled data:
its inputs in the compressed model (``X̂``, from the already-reconstructed prefix) should give the output the dense
block gives on the dense inputs. Blocks are done in forward order, each once, the others frozen (BRECQ's block
reconstruction, with the weights themselves as the variables rather than quantisation roundings).

The blocks are :class:`core.posttrain.walk.Walker`'s; those holding a compressed layer are reconstructed, each
replayed with the arguments of its calls (keywords too: a transformer layer's mask and position embeddings). A
block whose error the optimisation did not lower keeps its weights.

Reference: Li, Gong, Tan, Yang, Hu, Zhang, Yu, Wang, Gu. "BRECQ: Pushing the Limit of Post-Training Quantization
by Block Reconstruction." ICLR 2021.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from core.posttrain.walk import Call, main_output


@dataclass
class BlockResult:
    """Relative MSE of one block's output against the dense block's, before and after, and whether it was kept."""

    block: str
    before: float
    after: float
    kept: bool


def block_error(block: nn.Module, calls: list[Call], targets: list[torch.Tensor]) -> float:
    """``sum ||block(call) - target||^2 / sum ||target||^2`` over the captured calls (no grad)."""
    err = ref = 0.0
    with torch.no_grad():
        for (args, kwargs), target in zip(calls, targets):
            out = main_output(block(*args, **kwargs))
            err += float(((out - target) ** 2).sum())
            ref += float((target ** 2).sum())
    return err / max(ref, 1e-30)


def reconstruct_block(block: nn.Module, calls: list[Call], targets: list[torch.Tensor], *,
                      steps: int, lr: float, seed: int = 0) -> tuple[float, float, bool]:
    """Optimise ``block``'s floating-point parameters (in place) by Adam for ``steps`` steps, one captured batch a step
    (cycled in a seeded order), on the relative MSE to ``targets``; restore them if the error did not fall.
    Returns ``(error before, error after, kept)``."""
    before = block_error(block, calls, targets)
    saved = copy.deepcopy(block.state_dict())
    params = [p for p in block.parameters() if p.is_floating_point()]
    flags = [p.requires_grad for p in params]
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(params, lr=lr)
    try:
        for p in params:
            p.requires_grad_(True)
        order: list[int] = []
        for _ in range(steps):
            if not order:
                order = torch.randperm(len(calls), generator=generator).tolist()
            i = order.pop()
            args, kwargs = calls[i]
            with torch.enable_grad():
                out = main_output(block(*args, **kwargs))
                loss = ((out - targets[i]) ** 2).sum() / (targets[i] ** 2).sum().clamp_min(1e-30)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
    after = block_error(block, calls, targets)
    if after >= before:
        block.load_state_dict(saved)
        return before, before, False
    return before, after, True

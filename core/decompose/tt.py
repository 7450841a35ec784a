"""Tensor-train decomposition of a conv kernel, run as a chain of small convs (after Garipov et al., 2016).

The kernel is ordered ``(C, kh, kw, O)`` and decomposed by TT-SVD (``tensorly.decomposition.tensor_train``):
``W[c, a, b, o] = G1[c, r1] G2[r1, a, r2] G3[r2, b, r3] G4[r3, o]``, which is the chain
1x1 conv ``C -> r1``, ``kh x 1`` conv ``r1 -> r2``, ``1 x kw`` conv ``r2 -> r3``, 1x1 conv ``r3 -> O``.
The spatial convs carry stride, padding and dilation along their axis; the last 1x1 the bias.
Garipov et al. additionally reshape the channel modes into several small modes; here the TT runs
over the kernel's own four modes, which keeps every core a standard conv.

A rank ``r`` means TT-ranks ``(min(r, b1), min(r, b2), min(r, b3))`` with ``b_k`` the rank of the
k-th sequential unfolding; ``max_rank = max(b_k)`` reproduces the kernel exactly. TT-SVD truncations
depend on one another, so factors are cached per rank.

References
----------
Oseledets. "Tensor-Train Decomposition." SIAM J. Sci. Comput. 2011.
Garipov, Podoprikhin, Novikov, Vetrov. "Ultimate tensorization: compressing convolutional and FC
layers alike." arXiv:1611.03214, 2016.
"""
from __future__ import annotations

import numpy as np
import tensorly as tl
import torch
from tensorly.decomposition import tensor_train
from torch import nn

from core.decompose._base import BaseMethod
from core.decompose._specs import LayerSpec
from core.decompose.registry import register_method


def tt_bounds(conv: nn.Conv2d) -> tuple[int, int, int]:
    """Ranks of the unfoldings (C | kh kw O), (C kh | kw O), (C kh kw | O): the largest useful TT-ranks."""
    O, C, kh, kw = conv.weight.shape
    return min(C, kh * kw * O), min(C * kh, kw * O), min(C * kh * kw, O)


def tt_ranks(conv: nn.Conv2d, rank: int) -> tuple[int, int, int]:
    return tuple(min(rank, b) for b in tt_bounds(conv))


def tt_factors(conv: nn.Conv2d, rank: int) -> list[torch.Tensor]:
    """TT cores (float64) of the kernel ordered (C, kh, kw, O): shapes (1, C, r1), (r1, kh, r2), (r2, kw, r3), (r3, O, 1)."""
    kernel = conv.weight.detach().to(torch.float64).cpu().permute(1, 2, 3, 0).contiguous()
    with tl.backend_context("numpy"):
        cores = tensor_train(kernel.numpy(), [1, *tt_ranks(conv, rank), 1])
    return [torch.from_numpy(np.asarray(core)) for core in cores]


@register_method
class TT(BaseMethod):
    name = "tt"
    nested = False

    def max_rank(self, module: nn.Conv2d) -> int:
        return max(tt_bounds(module))

    def plan(self, module: nn.Conv2d, rank: int) -> list[LayerSpec]:
        dense = LayerSpec.of(module)
        r1, r2, r3 = tt_ranks(module, rank)
        return [
            dense.pointwise(dense.in_ch, r1),
            dense.axis(0, r1, r2),
            dense.axis(1, r2, r3),
            dense.pointwise(r3, dense.out_ch, bias=dense.bias),
        ]

    def factors_at(self, module: nn.Conv2d, rank: int, **options) -> list[torch.Tensor]:
        return tt_factors(module, rank)

    def layer_weights(self, module: nn.Conv2d, rank: int, factors) -> list[torch.Tensor]:
        G1, G2, G3, G4 = factors
        return [
            G1[0].T,  # (r1, C)
            G2.permute(2, 0, 1),  # (r2, r1, kh) -> (r2, r1, kh, 1)
            G3.permute(2, 0, 1),  # (r3, r2, kw) -> (r3, r2, 1, kw)
            G4[:, :, 0].T,  # (O, r3)
        ]

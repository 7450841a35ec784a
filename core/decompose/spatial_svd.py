"""Spatial SVD (Jaderberg et al., 2014): a ``kh x kw`` conv as a ``kh x 1`` conv to ``r`` channels, then ``1 x kw``.

The kernel is read as the matrix ``M[(o, b), (c, a)] = W[o, c, a, b]`` (output channel and column
against input channel and row); its rank-``r`` truncation is exactly a vertical conv followed by a
horizontal one. Stride, padding and dilation split by axis; the padding mode carries over (padding
along one axis commutes with a conv along the other). Grouped convs are factored per group.

References
----------
Jaderberg, Vedaldi, Zisserman. "Speeding up Convolutional Neural Networks with Low Rank Expansions." BMVC 2014.
"""
from __future__ import annotations

import torch
from torch import nn

from core.decompose._specs import LayerSpec
from core.decompose.registry import register_method
from core.decompose.svd import SVD


def spatial_matrix(conv: nn.Conv2d) -> torch.Tensor:
    """Per-group matrices (g, O/g * kw, C/g * kh) of the vertical/horizontal split."""
    W = conv.weight.detach()
    O, Cg, kh, kw = W.shape
    g = conv.groups
    return W.reshape(g, O // g, Cg, kh, kw).permute(0, 1, 4, 2, 3).reshape(g, O // g * kw, Cg * kh)


@register_method
class SpatialSVD(SVD):
    name = "spatial_svd"
    layer_types = (nn.Conv2d,)
    matrix = staticmethod(spatial_matrix)

    def plan(self, module: nn.Module, rank: int) -> list[LayerSpec]:
        dense = LayerSpec.of(module)
        g = dense.groups
        vertical = dense.axis(0, dense.in_ch, g * rank, groups=g)
        horizontal = dense.axis(1, g * rank, dense.out_ch, groups=g, bias=dense.bias)
        return [vertical, horizontal]

    def layer_weights(self, module: nn.Module, rank: int, factors) -> list[torch.Tensor]:
        first, second = factors  # (g, r, C/g*kh), (g, O/g*kw, r)
        g, kw = module.groups, module.kernel_size[1]
        horizontal = second.reshape(g, -1, kw, rank).transpose(2, 3)  # (g, O/g, r, kw)
        return [first, horizontal]

"""Spatial SVD (Jaderberg et al., 2014): a ``kh x kw`` conv as a ``kh x 1`` conv to ``r`` channels, then ``1 x kw``.

The kernel is read as the matrix ``M[(o, b), (c, a)] = W[o, c, a, b]`` (output channel and column
against input channel and row); its rank-``r`` truncation is exactly a vertical conv followed by a
horizontal one. Stride, padding and dilation split by axis; the padding mode carries over (padding
along one axis commutes with a conv along the other). Grouped convs are factored per group.

A ``ConvTranspose2d`` (ungrouped) splits the same way, into two transposed convs. With its kernel
``W (C, O, kh, kw)`` read as ``M[(o, b), (c, a)] = W[c, o, a, b]`` and ``M ~ B A``, input pixel ``(i, j)``
lands at row ``i s_h - p_h + a d_h`` and column ``j s_w - p_w + b d_w``; the row depends only on ``a``
and the column only on ``b``, so the layer is a ``kh x 1`` transposed conv to ``r`` channels (stride
``(s_h, 1)``, padding ``(p_h, 0)``, dilation ``(d_h, 1)``, output padding ``(op_h, 0)``: the full output
height, the input's width) followed by a ``1 x kw`` transposed conv (stride ``(1, s_w)``, padding
``(0, p_w)``, dilation ``(1, d_w)``, output padding ``(0, op_w)``; it keeps the height) with the bias:
exact at full rank, ``min(C kh, O kw)``. A grouped transposed conv is refused.

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


def spatial_matrix(conv: nn.Conv2d | nn.ConvTranspose2d) -> torch.Tensor:
    """Per-group matrices (g, O/g * kw, C/g * kh) of the vertical/horizontal split (g = 1 for a transposed conv)."""
    W = conv.weight.detach()
    if isinstance(conv, nn.ConvTranspose2d):  # W (C, O, kh, kw) -> M[(o, b), (c, a)]
        C, O, kh, kw = W.shape
        return W.permute(1, 3, 0, 2).reshape(1, O * kw, C * kh)
    O, Cg, kh, kw = W.shape
    g = conv.groups
    return W.reshape(g, O // g, Cg, kh, kw).permute(0, 1, 4, 2, 3).reshape(g, O // g * kw, Cg * kh)


@register_method
class SpatialSVD(SVD):
    name = "spatial_svd"
    layer_types = (nn.Conv2d, nn.ConvTranspose2d)
    matrix = staticmethod(spatial_matrix)

    def reason(self, module: nn.Module) -> str | None:
        if isinstance(module, nn.ConvTranspose2d) and module.groups > 1:
            return f"{self.name} needs an ungrouped transposed conv (groups={module.groups}); svd factors each group"
        return super().reason(module)

    def plan(self, module: nn.Module, rank: int) -> list[LayerSpec]:
        dense = LayerSpec.of(module)
        g = dense.groups
        vertical = dense.axis(0, dense.in_ch, g * rank, groups=g)
        horizontal = dense.axis(1, g * rank, dense.out_ch, groups=g, bias=dense.bias)
        return [vertical, horizontal]

    def layer_weights(self, module: nn.Module, rank: int, factors) -> list[torch.Tensor]:
        first, second = factors  # (g, r, C/g*kh), (g, O/g*kw, r)
        g, (kh, kw) = module.groups, module.kernel_size
        if isinstance(module, nn.ConvTranspose2d):  # weights (in, out, kh, kw): (C, r, kh, 1), (r, O, 1, kw)
            vertical = first[0].reshape(rank, -1, kh).transpose(0, 1)  # (C, r, kh)
            horizontal = second[0].reshape(-1, kw, rank).permute(2, 0, 1)  # (r, O, kw)
            return [vertical, horizontal]
        horizontal = second.reshape(g, -1, kw, rank).transpose(2, 3)  # (g, O/g, r, kw)
        return [first, horizontal]

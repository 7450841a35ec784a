"""``performer``: FAVOR+ linear attention with positive orthogonal random features.

``softmax(q k^T * scale)`` is approximated by ``phi(q) phi(k)^T`` with the positive random features
``phi(x) = exp(W x - |x|^2 / 2) / sqrt(m)`` of ``x`` scaled by ``scale^(1/2)``, whose inner products are
unbiased estimates of ``exp(q . k * scale)``. The rows of ``W`` (``m x d``) are orthogonal within each
block of ``d`` (QR of a Gaussian matrix) and rescaled to the lengths of Gaussian vectors; ``W`` is
drawn once from ``seed`` and kept as a buffer (no redrawing), so the module is deterministic. The
output is ``phi(Q) (phi(K)^T V) / (phi(Q) phi(K)^T 1)``: time and memory ``O(N m d)`` per head.

For numerical range the exponent is shifted by its maximum (per query row; over all keys of a head),
which cancels between numerator and denominator.

References
----------
Choromanski et al. "Rethinking Attention with Performers", ICLR 2021.
"""
from __future__ import annotations

import torch

from core.attention._base import check_option
from core.attention._qkv import QKVAttention
from core.attention.registry import register_variant

EPS = 1e-6  # keeps features strictly positive after the shift, as the reference implementation's kernel_epsilon


def orthogonal_features(features: int, dim: int, seed: int) -> torch.Tensor:
    """``(features, dim)`` Gaussian-length rows, orthogonal within each block of ``dim`` rows."""
    gen = torch.Generator().manual_seed(seed)
    blocks = []
    for _ in range(-(-features // dim)):
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen))
        blocks.append(q.T)
    lengths = torch.randn(features, dim, generator=gen).norm(dim=1, keepdim=True)  # chi(dim) distributed
    return torch.cat(blocks)[:features] * lengths


def positive_features(x: torch.Tensor, projection: torch.Tensor, *, is_query: bool,
                      shift: torch.Tensor | None = None) -> torch.Tensor:
    """``phi(x)`` ``(..., N, m)`` of pre-scaled ``x`` ``(..., N, d)``.

    ``shift`` (broadcastable to ``(..., N, m)``) is subtracted from the exponent ``W x - |x|^2 / 2``; by default
    the maximum of ``W x`` per row for queries and over all rows of a head for keys.
    """
    wx = x @ projection.T
    if shift is None:
        shift = wx.amax(-1, keepdim=True) if is_query else wx.amax((-2, -1), keepdim=True)
    return (torch.exp(wx - x.square().sum(-1, keepdim=True) / 2 - shift.detach()) + EPS) / projection.shape[0] ** 0.5


@register_variant
class PerformerAttention(QKVAttention):
    """FAVOR+ attention with ``features`` positive orthogonal random features.

    Parameters
    ----------
    dim, num_heads, head_dim : as :class:`~core.attention._qkv.QKVAttention`.
    features : ``m``, random features per head.
    seed : seed of the fixed projection.
    """

    variant = "performer"

    def __init__(self, dim: int, num_heads: int, head_dim: int, *, features: int = 64, seed: int = 0) -> None:
        super().__init__(dim, num_heads, head_dim)
        check_option(self.variant, "features", features, isinstance(features, int) and features >= 1, "an integer of at least 1")
        self.register_buffer("projection", orthogonal_features(features, head_dim, seed))

    def mix(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        root = self.scale ** 0.5
        q_f = positive_features(q * root, self.projection, is_query=True)  # (B, h, N, m)
        k_f = positive_features(k * root, self.projection, is_query=False)
        numerator = q_f @ (k_f.transpose(-1, -2) @ v)  # (B, h, N, d)
        return numerator / (q_f @ k_f.sum(-2, keepdim=True).transpose(-1, -2))

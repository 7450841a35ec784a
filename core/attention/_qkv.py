"""The query/key/value family (softmax, lowrank-qkv, linformer, nystrom, performer): timm's projections, a new mixing.

Every member projects tokens with one fused ``qkv`` linear into per-head queries, keys and values
``(B, h, N, d)`` exactly as timm does (``q_norm``/``k_norm`` applied), mixes them over the tokens
with its own :meth:`QKVAttention.mix`, and merges the heads through ``proj``.
"""
from __future__ import annotations

import torch
from torch import nn

from core.attention._base import AttentionVariant, TimmParts


class QKVAttention(AttentionVariant):
    """Multi-head attention whose token mixing a subclass defines in :meth:`mix`.

    Parameters
    ----------
    dim : input width C.
    num_heads, head_dim : heads and their width (``num_heads * head_dim`` need not equal ``dim``).
    """

    def __init__(self, dim: int, num_heads: int, head_dim: int) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, head_dim
        self.scale = head_dim ** -0.5
        self.attn_drop_p = 0.0
        self.qkv = nn.Linear(dim, 3 * num_heads * head_dim)
        self.q_norm: nn.Module = nn.Identity()
        self.k_norm: nn.Module = nn.Identity()
        self.proj = nn.Linear(num_heads * head_dim, dim)
        self.proj_drop: nn.Module = nn.Identity()

    def load_timm(self, parts: TimmParts, calibration: torch.Tensor | None) -> None:
        self.qkv, self.q_norm, self.k_norm, self.proj, self.proj_drop = (
            parts.qkv, parts.q_norm, parts.k_norm, parts.proj, parts.proj_drop)
        self.scale, self.attn_drop_p = parts.scale, parts.attn_drop_p

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values ``(B, h, N, d)`` of tokens ``x`` ``(B, N, C)``, as timm computes them."""
        B, N, _ = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (3, B, h, N, d)
        q, k, v = qkv.unbind(0)
        return self.q_norm(q), self.k_norm(k), v

    def mix(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The attention output per head ``(B, h, N, d)``."""
        raise NotImplementedError

    def mixed(self, x: torch.Tensor) -> torch.Tensor:
        """The heads' outputs merged, ``(B, N, h * d)``: what ``proj`` receives."""
        B, N, _ = x.shape
        return self.mix(*self.heads(x)).transpose(1, 2).reshape(B, N, self.num_heads * self.head_dim)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_drop(self.proj(self.mixed(x)))


def segment_means(x: torch.Tensor, segments: int) -> torch.Tensor:
    """Means of ``x`` ``(..., N, d)`` over ``segments`` contiguous runs of tokens, ``(..., segments, d)``.

    Segment ``i`` covers tokens ``[i N // s, (i + 1) N // s)``, so lengths differ by at most one and
    any ``N >= segments`` works (Nystromformer's reshape-and-mean needs ``N`` divisible by ``s``).
    Computed from one cumulative sum: linear in ``N``, with no ``(s, N)`` averaging matrix.
    """
    n = x.shape[-2]
    bounds = torch.arange(segments + 1, device=x.device) * n // segments
    sums = torch.cat([torch.zeros_like(x[..., :1, :]), x.cumsum(-2)], dim=-2)  # (..., N + 1, d)
    sizes = (bounds[1:] - bounds[:-1]).to(x.dtype).unsqueeze(-1)  # (s, 1)
    return (sums[..., bounds[1:], :] - sums[..., bounds[:-1], :]) / sizes

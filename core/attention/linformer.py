"""``linformer``: softmax attention over keys and values projected along the sequence, ``N -> k``.

``softmax(q (E K)^T * scale) (F V)`` with learned ``E``, ``F`` (``k x N``), one pair shared by all
heads (the paper's headwise sharing). They are sized by the sequence length, so a module serves one
``N``. Both start as contiguous segment means (row ``i`` averages tokens ``[i N/k, (i+1) N/k)``) rather
than the paper's random init, so that a swapped-in module starts near the attention it replaces; at
``k = N`` that is the identity and the module is exactly softmax attention. Time and memory
``O(N k d)`` per head.

References
----------
Wang, Li, Khabsa, Fang, Ma. "Linformer: Self-Attention with Linear Complexity", arXiv:2006.04768, 2020.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.attention._base import check_option
from core.attention._qkv import QKVAttention, segment_means
from core.attention.registry import register_variant
from core.errors import RankscopeError


@register_variant
class LinformerAttention(QKVAttention):
    """Linformer attention with projected length ``k``.

    Parameters
    ----------
    dim, num_heads, head_dim : as :class:`~core.attention._qkv.QKVAttention`.
    seq_len : the number of tokens ``N`` every input must have.
    k : projected length, from 1 to ``seq_len``.
    """

    variant = "linformer"
    needs_seq_len = True

    def __init__(self, dim: int, num_heads: int, head_dim: int, seq_len: int, *, k: int = 32) -> None:
        super().__init__(dim, num_heads, head_dim)
        check_option(self.variant, "k", k, isinstance(k, int) and 1 <= k <= seq_len, f"an integer from 1 to seq_len={seq_len}")
        self.seq_len = seq_len
        pool = segment_means(torch.eye(seq_len), k).contiguous()  # (k, N): segment means of the identity
        self.E = nn.Parameter(pool.clone())
        self.F = nn.Parameter(pool)

    def mix(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if q.shape[-2] != self.seq_len:
            raise RankscopeError(f"linformer was built for {self.seq_len} tokens, got {q.shape[-2]}; swap it again with seq_len={q.shape[-2]}")
        return F.scaled_dot_product_attention(q, self.E @ k, self.F @ v, scale=self.scale)  # keys, values (B, h, k, d)

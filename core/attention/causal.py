"""Causal variants for a language model's ``LlamaAttention``: ``softmax``, ``lowrank-qkv`` and ``performer``.

Each stands in for a transformers ``LlamaAttention`` (see :mod:`core.attention._llama` for the call, RoPE,
grouped-query heads and the KV cache) under the name of its timm counterpart and with the same options:

- ``softmax``: exact causal attention through SDPA, the dense layer itself (its q/k/v projections stacked).
- ``lowrank-qkv``: the same attention, the stacked q/k/v projection and ``o_proj`` each truncated to ``rank``
  (``svd``, or ``aa_svd`` whitened by what the layer receives on calibration text), as
  :mod:`core.attention.lowrank_qkv` does for timm.
- ``performer``: FAVOR+ with causal prefix sums. With ``phi`` the positive random features of
  :mod:`core.attention.performer`, query ``i`` reads ``phi(q_i) S_i / phi(q_i) z_i`` with ``S_i = sum_{j <= i}
  phi(k_j) v_j^T`` and ``z_i = sum_{j <= i} phi(k_j)`` (:func:`causal_linear_attention`).

The performer's key-side shift. The timm variant subtracts the largest exponent over all keys of a head, a constant
that cancels between numerator and denominator except in the ``EPS`` added to every feature after the shift: scaled
back, that floor is ``EPS * exp(shift)``, so a large later key would lower the floor of the earlier positions' features
and change their output. Here the shift is the largest exponent of the FIRST key (every query reads position 0, so it
is causal, and it is the same with and without the KV cache), floored at ``max_m |w_m|^2 / 2 - MAX_EXPONENT``: every
exponent ``w . x - |x|^2 / 2`` is at most ``|w|^2 / 2``, so no feature exceeds ``exp(MAX_EXPONENT)``.

``linformer``, ``nystrom``, ``nmf``, ``pnmf`` and ``ntf`` have no causal form
(:data:`core.attention.registry.NOT_CAUSAL` says why each); asking for one is refused.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from core.attention._base import check_option
from core.attention._llama import CausalAttention, LlamaCalibration, LlamaParts, allowed, causal_mask
from core.attention.lowrank_qkv import METHODS, factored_linear
from core.attention.performer import orthogonal_features, positive_features
from core.attention.registry import register_causal
from core.errors import RankscopeError

MAX_EXPONENT = 60.0  # largest key exponent after the shift: features <= e^60, sums of them stay far below float32's max


def repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Keys or values ``(B, h_kv, L, d)`` repeated to ``(B, h_kv * groups, L, d)``, as transformers' ``repeat_kv``."""
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)


def causal_key_shift(x: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
    """``(..., 1, 1)``: the shift of the keys' exponents of pre-scaled keys ``x`` ``(..., L, d)`` (module docstring)."""
    first = x[..., :1, :]  # (..., 1, d): position 0, which every query reads
    exponent = first @ projection.T - first.square().sum(-1, keepdim=True) / 2  # (..., 1, m)
    floor = projection.square().sum(-1).max() / 2 - MAX_EXPONENT
    return exponent.amax(-1, keepdim=True).clamp_min(floor).detach()


def causal_linear_attention(q_features: torch.Tensor, k_features: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal linear attention ``(B, h, T, d)`` by prefix sums over the keys.

    Parameters
    ----------
    q_features : ``phi(q)`` ``(B, h, T, m)``; query ``i`` sits at position ``L - T + i``.
    k_features : ``phi(k)`` ``(B, h_kv, L, m)``, positive; ``h`` is a multiple of ``h_kv`` (grouped-query heads).
    v : values ``(B, h_kv, L, d)``.

    Returns
    -------
    torch.Tensor
        ``sum_{j <= p(i)} (phi(q_i) . phi(k_j)) v_j / sum_{j <= p(i)} phi(q_i) . phi(k_j)`` for each query ``i``
        at position ``p(i)``: time ``O(L m d)`` per head, and the ``(T, m, d)`` prefix sums of the last ``T`` keys.
    """
    B, h, T, m = q_features.shape
    kv_heads, L = k_features.shape[1], k_features.shape[2]
    past = L - T  # keys before the first query, summed once
    q_g = q_features.reshape(B, kv_heads, h // kv_heads, T, m)  # (B, h_kv, g, T, m): query head i reads kv head i // g
    k_new, v_new = k_features[:, :, past:], v[:, :, past:]
    state = torch.einsum("bkln,bkld->bklnd", k_new, v_new).cumsum(2)  # (B, h_kv, T, m, d)
    norm = k_new.cumsum(2)  # (B, h_kv, T, m)
    if past:
        state = state + torch.einsum("bkln,bkld->bknd", k_features[:, :, :past], v[:, :, :past]).unsqueeze(2)
        norm = norm + k_features[:, :, :past].sum(2, keepdim=True)
    numerator = torch.einsum("bkgtn,bktnd->bkgtd", q_g, state)  # (B, h_kv, g, T, d)
    denominator = torch.einsum("bkgtn,bktn->bkgt", q_g, norm).unsqueeze(-1)
    return (numerator / denominator).reshape(B, h, T, v.shape[-1])


@register_causal
class CausalSoftmaxAttention(CausalAttention):
    """Exact causal softmax attention through SDPA: the ``LlamaAttention`` it is built from, reproduced."""

    variant = "softmax"

    def mix(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        k, v = repeat_kv(k, self.num_key_value_groups), repeat_kv(v, self.num_key_value_groups)  # (B, h, L, d)
        T, L = q.shape[-2], k.shape[-2]
        mask, is_causal = None, False
        if attention_mask is not None:
            mask = attention_mask[..., :L]
        elif T == L:
            is_causal = T > 1
        elif T > 1:  # queries after cached keys: SDPA's is_causal aligns top-left, the queries are the last T
            mask = causal_mask(T, L, q.device)
        dropout = self.attention_dropout if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=self.scaling,
                                              is_causal=is_causal)


@register_causal
class CausalLowRankQKVAttention(CausalSoftmaxAttention):
    """Exact causal attention with the stacked q/k/v projection and ``o_proj`` factored at ``rank``.

    Parameters
    ----------
    hidden_size, num_heads, num_kv_heads, head_dim : as :class:`~core.attention._llama.CausalAttention`.
    rank : of both factored projections, from 1 to ``min(C, (h + 2 h_kv) d)`` and ``min(h d, C)``.
    method : ``"svd"`` or ``"aa_svd"`` (needs calibration: ``swap_model(lm, ..., calibration=token ids)``).
    """

    variant = "lowrank-qkv"

    def __init__(self, hidden_size: int, num_heads: int, num_kv_heads: int, head_dim: int, *, rank: int = 32,
                 method: str = "svd") -> None:
        super().__init__(hidden_size, num_heads, num_kv_heads, head_dim)
        check_option(self.variant, "method", method, method in METHODS, f"one of {', '.join(METHODS)}")
        self.rank, self.method = rank, method
        with torch.no_grad():
            self.qkv = factored_linear(self.qkv, rank, "svd")
            self.o_proj = factored_linear(self.o_proj, rank, "svd")

    def load_llama(self, parts: LlamaParts, calibration: LlamaCalibration | None) -> None:
        super().load_llama(parts, None)
        if self.method != "aa_svd":
            calibration = None  # plain svd is data-free
        elif calibration is None:
            check_option(self.variant, "calibration", None, False,
                         "what the layer receives on calibration text for method aa_svd (swap_model(..., calibration=token ids))")
        elif not isinstance(calibration, LlamaCalibration):
            check_option(self.variant, "calibration", type(calibration).__name__, False,
                         "a LlamaCalibration for a LlamaAttention (layer_calibration or swap_model(..., calibration=token ids) makes it)")
        self.qkv = factored_linear(self.qkv, self.rank, self.method, None if calibration is None else calibration.hidden_states)
        self.o_proj = factored_linear(self.o_proj, self.rank, self.method, None if calibration is None else calibration.mixed)


@register_causal
class CausalPerformerAttention(CausalAttention):
    """FAVOR+ with causal prefix sums and ``features`` positive orthogonal random features per head.

    Parameters
    ----------
    hidden_size, num_heads, num_kv_heads, head_dim : as :class:`~core.attention._llama.CausalAttention`.
    features : ``m``, random features per head.
    seed : seed of the fixed projection.

    Only the causal mask is applied: a padding mask (sequences of different lengths in one batch) is refused.
    """

    variant = "performer"

    def __init__(self, hidden_size: int, num_heads: int, num_kv_heads: int, head_dim: int, *, features: int = 64,
                 seed: int = 0) -> None:
        super().__init__(hidden_size, num_heads, num_kv_heads, head_dim)
        check_option(self.variant, "features", features, isinstance(features, int) and features >= 1, "an integer of at least 1")
        self.register_buffer("projection", orthogonal_features(features, head_dim, seed))

    def features(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``phi(q)`` ``(B, h, T, m)`` and ``phi(k)`` ``(B, h_kv, L, m)`` of rotated queries and keys."""
        root = self.scaling ** 0.5
        k = k * root
        q_features = positive_features(q * root, self.projection, is_query=True)  # shifted per query: causal
        return q_features, positive_features(k, self.projection, is_query=False, shift=causal_key_shift(k, self.projection))

    def mix(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        T, L = q.shape[-2], k.shape[-2]
        if attention_mask is not None and not bool((allowed(attention_mask[..., :L]) == causal_mask(T, L, q.device)).all()):
            raise RankscopeError("performer attention applies the causal mask only, not padding: give sequences of "
                                 "one length without an attention mask")
        return causal_linear_attention(*self.features(q, k), v)

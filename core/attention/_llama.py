"""What every causal variant shares: the base class standing in for a transformers ``LlamaAttention``, its parts, masks.

A causal variant takes the call a ``LlamaDecoderLayer`` makes, ``forward(hidden_states, position_embeddings,
attention_mask, cache=None, **kwargs) -> (attn_output, None)``, projects the tokens into queries ``(B, h, T, d)``
and keys and values ``(B, h_kv, T, d)`` (grouped-query heads: query head ``i`` reads key/value head
``i // (h / h_kv)``, as ``repeat_kv`` lays them out), rotates queries and keys with transformers' own
``apply_rotary_pos_emb``, appends keys and values to the KV cache when there is one (``cache.update``), mixes them
with its own :meth:`CausalAttention.mix` (query ``i`` of ``T`` sits at position ``L - T + i`` of the ``L`` keys) and
merges the heads through ``o_proj``. ``past_key_values=`` (the name transformers deprecates for ``cache=``) is taken
too. Nothing here imports transformers at import time: a ``LlamaAttention`` exists only once it is imported.
"""
from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from core.errors import RankscopeError

LLAMA_MODULE = "transformers.models.llama.modeling_llama"


def is_llama_attention(module: nn.Module) -> bool:
    """Whether ``module`` is a transformers ``LlamaAttention`` (``False`` while transformers' llama is not imported)."""
    llama = sys.modules.get(LLAMA_MODULE)
    return llama is not None and isinstance(module, llama.LlamaAttention)


@dataclass(frozen=True)
class LlamaParts:
    """Copies of the pieces of a ``LlamaAttention`` a causal variant reuses (the source is never shared)."""

    hidden_size: int  # C
    num_heads: int  # h, query heads
    num_kv_heads: int  # h_kv, key/value heads (h is a multiple)
    head_dim: int  # d
    scaling: float  # d ** -0.5
    dropout: float  # attention dropout, applied in training only
    layer_idx: int  # the layer's slot in the KV cache
    qkv: nn.Linear  # C -> (h + 2 h_kv) d: q_proj, k_proj, v_proj stacked [q | k | v]
    o_proj: nn.Linear  # h d -> C


@dataclass(frozen=True)
class LlamaCalibration:
    """What one ``LlamaAttention`` receives on calibration text, for data-aware factoring."""

    hidden_states: torch.Tensor  # (B, T, C): what q_proj, k_proj and v_proj multiply
    mixed: torch.Tensor  # (B, T, h d): what o_proj multiplies (the dense attention's heads, merged)


def llama_parts(attn: nn.Module) -> LlamaParts:
    """Copy the parts of a ``LlamaAttention``, its q/k/v projections stacked into one linear.

    Raises
    ------
    RankscopeError
        ``attn`` is not a ``LlamaAttention`` (a causal variant already swapped in cannot be swapped again).
    """
    if not is_llama_attention(attn):
        kind = f"a {attn.variant} causal variant" if isinstance(attn, CausalAttention) else type(attn).__name__
        raise RankscopeError(f"only a transformers LlamaAttention can be swapped for a causal variant, got {kind}; "
                             "swap from the original model")
    q, k, v, o = attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj
    qkv = nn.Linear(q.in_features, q.out_features + k.out_features + v.out_features, bias=q.bias is not None,
                    device=q.weight.device, dtype=q.weight.dtype)
    with torch.no_grad():
        qkv.weight.copy_(torch.cat([q.weight, k.weight, v.weight]))
        if q.bias is not None:
            qkv.bias.copy_(torch.cat([q.bias, k.bias, v.bias]))
    head_dim = int(attn.head_dim)
    return LlamaParts(
        hidden_size=q.in_features, num_heads=q.out_features // head_dim, num_kv_heads=k.out_features // head_dim,
        head_dim=head_dim, scaling=float(attn.scaling), dropout=float(attn.attention_dropout),
        layer_idx=int(attn.layer_idx), qkv=qkv, o_proj=copy.deepcopy(o),
    )


def causal_mask(queries: int, keys: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(queries, keys)`` bool, ``True`` where query ``i`` (at position ``keys - queries + i``) may read key ``j``."""
    position = torch.arange(queries, device=device) + (keys - queries)
    return torch.arange(keys, device=device) <= position[:, None]


def allowed(mask: torch.Tensor) -> torch.Tensor:
    """Where a transformers attention mask lets a query read a key: a bool mask as it is, an additive one where > min/2."""
    return mask if mask.dtype == torch.bool else mask > torch.finfo(mask.dtype).min / 2


class CausalAttention(nn.Module):
    """Base of the causal variants: a drop-in for a ``LlamaAttention``.

    A subclass sets ``variant`` (the registry name it shares with its timm counterpart), takes
    ``(hidden_size, num_heads, num_kv_heads, head_dim)`` positionally and its hyperparameters as keywords with
    the defaults of that counterpart, and implements :meth:`mix`; :meth:`load_llama` takes over the weights.

    Parameters
    ----------
    hidden_size : C.
    num_heads, num_kv_heads : query heads and key/value heads (``num_heads`` a multiple of ``num_kv_heads``).
    head_dim : d.
    """

    variant = ""
    is_causal = True

    def __init__(self, hidden_size: int, num_heads: int, num_kv_heads: int, head_dim: int) -> None:
        super().__init__()
        if num_heads % num_kv_heads:
            raise RankscopeError(f"{num_heads} query heads cannot share {num_kv_heads} key/value heads evenly")
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.num_key_value_groups = num_heads // num_kv_heads
        self.scaling, self.attention_dropout, self.layer_idx = head_dim ** -0.5, 0.0, 0
        self.qkv: nn.Module = nn.Linear(hidden_size, (num_heads + 2 * num_kv_heads) * head_dim, bias=False)
        self.o_proj: nn.Module = nn.Linear(num_heads * head_dim, hidden_size, bias=False)

    @classmethod
    def from_llama(cls, attn: nn.Module, *, calibration: LlamaCalibration | None = None, **hyper: Any) -> CausalAttention:
        """A new variant built from ``attn`` (a ``LlamaAttention``, left untouched), in ``attn``'s training mode.

        Parameters
        ----------
        attn : the ``LlamaAttention`` to stand in for.
        calibration : what ``attn`` receives on calibration text (only ``lowrank-qkv`` with ``aa_svd`` reads it).
        **hyper : the variant's hyperparameters.
        """
        with torch.no_grad():
            parts = llama_parts(attn)
            new = cls(parts.hidden_size, parts.num_heads, parts.num_kv_heads, parts.head_dim, **hyper)
            new.load_llama(parts, calibration)
        return new.to(parts.o_proj.weight).train(attn.training)

    def load_llama(self, parts: LlamaParts, calibration: LlamaCalibration | None) -> None:
        """Take over the projections of ``parts`` (called under ``torch.no_grad``)."""
        self.qkv, self.o_proj = parts.qkv, parts.o_proj
        self.scaling, self.attention_dropout, self.layer_idx = parts.scaling, parts.dropout, parts.layer_idx

    def heads(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries ``(B, h, T, d)``, keys and values ``(B, h_kv, T, d)`` of ``hidden_states`` ``(B, T, C)``, before RoPE."""
        B, T, _ = hidden_states.shape
        q, k, v = self.qkv(hidden_states).split(
            [self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim, self.num_kv_heads * self.head_dim], -1)
        return (q.view(B, T, -1, self.head_dim).transpose(1, 2), k.view(B, T, -1, self.head_dim).transpose(1, 2),
                v.view(B, T, -1, self.head_dim).transpose(1, 2))

    def mix(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Per-head output ``(B, h, T, d)`` of rotated queries ``(B, h, T, d)`` over every key/value ``(B, h_kv, L, d)`` so far.

        ``attention_mask`` is what the model passes: ``None`` for plain causal attention, else a bool or additive
        mask broadcastable to ``(B, h, T, L)``.
        """
        raise NotImplementedError

    def forward(self, hidden_states: torch.Tensor, position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
                attention_mask: torch.Tensor | None = None, cache: Any = None, past_key_values: Any = None,
                **kwargs: Any) -> tuple[torch.Tensor, None]:
        """``(attn_output (B, T, C), None)``, as ``LlamaAttention.forward`` with an SDPA implementation returns."""
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb  # noqa: PLC0415 - slow to import

        if position_embeddings is None:
            raise RankscopeError(f"{self.variant} causal attention needs position_embeddings (cos, sin) from the model")
        cache = cache if cache is not None else past_key_values
        B, T, _ = hidden_states.shape
        q, k, v = self.heads(hidden_states)
        cos, sin = position_embeddings
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        if cache is not None:  # every key and value so far, (B, h_kv, L, d)
            k, v = cache.update(k, v, self.layer_idx, kwargs=kwargs)
        out = self.mix(q, k, v, attention_mask)  # (B, h, T, d)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim)), None

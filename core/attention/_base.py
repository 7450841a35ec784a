"""What every attention variant shares: the base class, the parts read from a timm ``Attention``, option checks.

A variant is an ``nn.Module`` mapping tokens ``(B, N, C)`` to ``(B, N, C)`` like multi-head
self-attention. It is built either directly (``NMFAttention(dim, num_heads, head_dim, rank=8)``,
random weights) or from a timm ``Attention`` with :meth:`AttentionVariant.from_timm`, which copies
the weights the variant has a use for and leaves the source module untouched.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from timm.layers import Attention as TimmAttention
from torch import nn

from core.errors import RankscopeError


@dataclass(frozen=True)
class TimmParts:
    """Copies of the pieces of a timm ``Attention`` a variant may reuse (the source is never shared)."""

    dim: int  # input width C
    num_heads: int
    head_dim: int
    scale: float
    qkv: nn.Linear  # C -> 3 * num_heads * head_dim, laid out [q | k | v], each head-major
    q_norm: nn.Module
    k_norm: nn.Module
    proj: nn.Linear  # num_heads * head_dim -> C_out
    proj_drop: nn.Module
    attn_drop_p: float


def timm_parts(attn: nn.Module) -> TimmParts:
    """Copy the parts of a timm ``Attention``; :class:`RankscopeError` for a module no variant can stand in for.

    Gated attention (``gate``) and ``scale_norm`` (a norm between the heads and ``proj``) are refused:
    no variant reproduces them, and dropping them silently would change the block.
    """
    if not isinstance(attn, TimmAttention):
        kind = f"a {attn.variant} attention variant" if isinstance(attn, AttentionVariant) else type(attn).__name__
        raise RankscopeError(f"only a timm Attention can be swapped, got {kind}; swap from the original model")
    if getattr(attn, "gate", None) is not None or not isinstance(getattr(attn, "norm", nn.Identity()), nn.Identity):
        raise RankscopeError("gated or scale-normed timm Attention is not supported by the attention variants")
    return TimmParts(
        dim=attn.qkv.in_features, num_heads=attn.num_heads, head_dim=attn.head_dim, scale=float(attn.scale),
        qkv=copy.deepcopy(attn.qkv), q_norm=copy.deepcopy(attn.q_norm), k_norm=copy.deepcopy(attn.k_norm),
        proj=copy.deepcopy(attn.proj), proj_drop=copy.deepcopy(attn.proj_drop), attn_drop_p=float(attn.attn_drop.p),
    )


def check_option(variant: str, name: str, value, ok: bool, rule: str) -> None:
    """Raise :class:`RankscopeError` ``"<variant>: <name> must be <rule>, got <value>"`` unless ``ok``."""
    if not ok:
        raise RankscopeError(f"{variant}: {name} must be {rule}, got {value!r}")


class AttentionVariant(nn.Module):
    """Base of the registered variants: tokens ``(B, N, C)`` in, ``(B, N, C_out)`` out.

    A subclass sets ``variant`` (its registry name), takes ``(dim, num_heads, head_dim)`` positionally
    (plus ``seq_len`` when ``needs_seq_len``) and its hyperparameters as keywords with defaults, and
    implements :meth:`load_timm`.
    """

    variant = ""
    needs_seq_len = False  # True when parameters are sized by the sequence length (linformer)

    @classmethod
    def from_timm(cls, attn: nn.Module, *, seq_len: int | None = None, calibration: torch.Tensor | None = None,
                  **hyper) -> AttentionVariant:
        """A new variant module built from timm ``attn`` (left untouched), in ``attn``'s training mode.

        Parameters
        ----------
        attn : a ``timm.layers.Attention``.
        seq_len : tokens per sequence; needed by the variants whose parameters are sized by it.
        calibration : input tokens ``(B, N, C)`` for data-aware building (only ``lowrank-qkv`` with ``aa_svd``).
        **hyper : the variant's hyperparameters.
        """
        parts = timm_parts(attn)
        shape: tuple[int, ...] = (parts.dim, parts.num_heads, parts.head_dim)
        if cls.needs_seq_len:
            if seq_len is None:
                raise RankscopeError(f"{cls.variant} is sized by the sequence length: pass seq_len= (tokens per image)")
            shape += (seq_len,)
        new = cls(*shape, **hyper)
        with torch.no_grad():
            new.load_timm(parts, calibration)
        return new.train(attn.training)

    def load_timm(self, parts: TimmParts, calibration: torch.Tensor | None) -> None:
        """Take over the weights of ``parts`` (called under ``torch.no_grad``)."""
        raise NotImplementedError

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, N, C)`` to ``(B, N, C_out)``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        """:meth:`attend`; timm blocks pass ``attn_mask``/``is_causal``, which no variant supports but their defaults."""
        if attn_mask is not None or is_causal:
            raise RankscopeError(f"{self.variant} attention takes no attention mask and is not causal")
        return self.attend(x)

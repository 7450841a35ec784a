"""Attention variants: modules with the interface of multi-head self-attention, one registry to swap them in.

>>> from core.attention import list_variants, swap_attention, swap_model
>>> new = swap_attention(model.blocks[0].attn, "nmf", rank=8)      # doctest: +SKIP
>>> small = swap_model(model, "linformer", k=16)                    # doctest: +SKIP

Variants: ``softmax`` (SDPA, exact), ``lowrank-qkv`` (exact attention, truncated-SVD projections),
``linformer``, ``nystrom``, ``performer`` (approximate attention), ``nmf``, ``pnmf``, ``ntf``
(Hamburger: a non-negative factorization in place of attention).
"""
from core.attention._base import AttentionVariant
from core.attention.registry import (
    attention_paths,
    get_variant,
    list_variants,
    register_variant,
    swap_attention,
    swap_model,
    variant_options,
    vit_seq_len,
)

# Importing a variant's module registers it; the order here is the order of list_variants().
from core.attention import softmax, lowrank_qkv, linformer, nystrom, performer, nmf, pnmf, ntf  # noqa: E402,F401  isort: skip
from core.attention.nmf import nmf_objective, NMFAttention  # noqa: E402
from core.attention.ntf import ntf_objective, NTFAttention  # noqa: E402
from core.attention.pnmf import pnmf_objective, PNMFAttention  # noqa: E402
from core.attention.softmax import SoftmaxAttention, sdpa_backend  # noqa: E402

__all__ = [
    "attention_paths",
    "AttentionVariant",
    "get_variant",
    "list_variants",
    "NMFAttention",
    "nmf_objective",
    "NTFAttention",
    "ntf_objective",
    "PNMFAttention",
    "pnmf_objective",
    "register_variant",
    "sdpa_backend",
    "SoftmaxAttention",
    "swap_attention",
    "swap_model",
    "variant_options",
    "vit_seq_len",
]

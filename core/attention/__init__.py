"""Attention variants: modules with the interface of multi-head self-attention, one registry to swap them in.

>>> from core.attention import list_variants, swap_attention, swap_model
>>> new = swap_attention(model.blocks[0].attn, "nmf", rank=8)      # doctest: +SKIP
>>> small = swap_model(model, "linformer", k=16)                    # doctest: +SKIP

Variants: ``softmax`` (SDPA, exact), ``lowrank-qkv`` (exact attention, truncated-SVD projections),
``linformer``, ``nystrom``, ``performer`` (approximate attention), ``nmf``, ``pnmf``, ``ntf``
(Hamburger: a non-negative factorization in place of attention).

A causal language model's ``LlamaAttention`` (``smollm2-135m``) takes the causal forms of ``softmax``,
``lowrank-qkv`` and ``performer`` (:func:`causal_variants`, :mod:`core.attention.causal`), in chosen layers:

>>> small = swap_model(lm, "performer", layers=[-4, -3, -2, -1])   # doctest: +SKIP
"""
from core.attention._base import AttentionVariant
from core.attention._llama import CausalAttention, LlamaCalibration, causal_mask, is_llama_attention
from core.attention.registry import (
    NOT_CAUSAL,
    attention_paths,
    causal_variants,
    chosen_layers,
    get_causal_variant,
    get_variant,
    layer_calibration,
    list_variants,
    model_variants,
    register_causal,
    register_variant,
    swap_attention,
    swap_model,
    variant_options,
    vit_seq_len,
)

# Importing a variant's module registers it; the order here is the order of list_variants().
from core.attention import softmax, lowrank_qkv, linformer, nystrom, performer, nmf, pnmf, ntf  # noqa: E402,F401  isort: skip
from core.attention import causal  # noqa: E402,F401  isort: skip  (the causal forms, after their timm counterparts)
from core.attention.causal import (  # noqa: E402
    CausalLowRankQKVAttention,
    CausalPerformerAttention,
    CausalSoftmaxAttention,
    causal_key_shift,
    causal_linear_attention,
)
from core.attention.nmf import nmf_objective, NMFAttention  # noqa: E402
from core.attention.ntf import ntf_objective, NTFAttention  # noqa: E402
from core.attention.pnmf import pnmf_objective, PNMFAttention  # noqa: E402
from core.attention.softmax import SoftmaxAttention, sdpa_backend  # noqa: E402

__all__ = [
    "attention_paths",
    "AttentionVariant",
    "CausalAttention",
    "causal_key_shift",
    "causal_linear_attention",
    "CausalLowRankQKVAttention",
    "causal_mask",
    "CausalPerformerAttention",
    "CausalSoftmaxAttention",
    "causal_variants",
    "chosen_layers",
    "get_causal_variant",
    "get_variant",
    "is_llama_attention",
    "layer_calibration",
    "list_variants",
    "LlamaCalibration",
    "model_variants",
    "NOT_CAUSAL",
    "NMFAttention",
    "nmf_objective",
    "NTFAttention",
    "ntf_objective",
    "PNMFAttention",
    "pnmf_objective",
    "register_causal",
    "register_variant",
    "sdpa_backend",
    "SoftmaxAttention",
    "swap_attention",
    "swap_model",
    "variant_options",
    "vit_seq_len",
]

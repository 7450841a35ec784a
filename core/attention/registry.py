"""The attention variants by name: listing, their options, finding attention in a model, swapping it.

Each variant module registers its class with :func:`register_variant`; importing
:mod:`core.attention` imports them all. A variant's options are the keyword arguments (with
defaults) of its constructor, so the class is the single source of names and defaults.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from timm.layers import Attention as TimmAttention
from torch import nn

from core.attention._base import AttentionVariant
from core.errors import RankscopeError, close_matches_hint
from core.layers import set_module
from core.options import keyword_defaults
from core.profile.latency import capture_inputs

_VARIANTS: dict[str, type[AttentionVariant]] = {}


def register_variant(cls: type[AttentionVariant]) -> type[AttentionVariant]:
    """Class decorator: register a variant under its ``variant`` name."""
    if cls.variant in _VARIANTS:
        raise ValueError(f"attention variant {cls.variant!r} is registered twice")
    _VARIANTS[cls.variant] = cls
    return cls


def list_variants() -> list[str]:
    """Names of all variants, in registration order."""
    return list(_VARIANTS)


def get_variant(name: str) -> type[AttentionVariant]:
    """The class registered under ``name``; :class:`RankscopeError` naming close matches if there is none."""
    try:
        return _VARIANTS[name]
    except KeyError:
        raise RankscopeError(
            f"unknown attention variant {name!r}{close_matches_hint(name, list(_VARIANTS))}; known: {', '.join(_VARIANTS)}"
        ) from None


def variant_options(name: str) -> dict[str, Any]:
    """The hyperparameters variant ``name`` takes, with their defaults (e.g. ``{"rank": 8, "steps": 6, ...}``)."""
    return keyword_defaults(get_variant(name).__init__)


def attention_paths(model: nn.Module) -> list[str]:
    """``named_modules`` paths of the timm ``Attention`` modules and of already-swapped variants in ``model``."""
    return [name for name, m in model.named_modules() if isinstance(m, (TimmAttention, AttentionVariant))]


def swap_attention(attn: nn.Module, variant: str, *, seq_len: int | None = None, calibration: torch.Tensor | None = None,
                   **hyper: Any) -> AttentionVariant:
    """A new ``variant`` module standing in for timm ``attn`` (left untouched), reusing its weights.

    Parameters
    ----------
    attn : a ``timm.layers.Attention`` (a variant cannot be swapped again: swap the original).
    variant : a name from :func:`list_variants`.
    seq_len : tokens per sequence (needed by ``linformer``).
    calibration : tokens ``(B, N, C)`` entering ``attn`` (needed by ``lowrank-qkv`` with ``method="aa_svd"``).
    **hyper : options from :func:`variant_options`; omitted ones take their defaults.

    Raises
    ------
    RankscopeError
        Unknown variant or option, a bad option value, or a module that is not a timm ``Attention``.
    """
    cls = get_variant(variant)
    allowed = variant_options(variant)
    unknown = sorted(set(hyper) - set(allowed))
    if unknown:
        hint = close_matches_hint(unknown[0], list(allowed))
        raise RankscopeError(f"{variant} takes no option {', '.join(unknown)}{hint}; options: {', '.join(allowed) or 'none'}")
    return cls.from_timm(attn, seq_len=seq_len, calibration=calibration, **hyper)


def vit_seq_len(model: nn.Module) -> int | None:
    """Tokens per image of a timm ``VisionTransformer`` (patches plus class/register tokens), else ``None``."""
    patch_embed = getattr(model, "patch_embed", None)
    if patch_embed is None or not hasattr(patch_embed, "num_patches"):
        return None
    return int(patch_embed.num_patches) + int(getattr(model, "num_prefix_tokens", 0))


def swap_model(model: nn.Module, variant: str, *, seq_len: int | None = None, calibration: torch.Tensor | None = None,
               **hyper: Any) -> nn.Module:
    """A copy of ``model`` with every timm ``Attention`` replaced by ``variant`` (``model`` is left untouched).

    Parameters
    ----------
    model : a model with timm ``Attention`` modules.
    variant, hyper : as :func:`swap_attention`.
    seq_len : tokens per sequence; read from a timm ``VisionTransformer`` when not given.
    calibration : a batch of MODEL inputs; each attention is calibrated on the tokens it receives from it.
    """
    paths = [p for p in attention_paths(model) if isinstance(model.get_submodule(p), TimmAttention)]
    if not paths:
        raise RankscopeError(f"{type(model).__name__} has no timm Attention module to swap")
    tokens: dict[str, torch.Tensor | None] = dict.fromkeys(paths)
    if calibration is not None:
        with torch.no_grad():
            tokens = {p: args[0] for p, (args, _) in capture_inputs(model, calibration, paths).items()}
    seq_len = seq_len if seq_len is not None else vit_seq_len(model)
    new = copy.deepcopy(model)
    for path in paths:
        set_module(new, path, swap_attention(new.get_submodule(path), variant, seq_len=seq_len, calibration=tokens[path], **hyper))
    return new

"""The attention variants by name: listing, their options, finding attention in a model, swapping it.

Each variant module registers its class with :func:`register_variant` (timm ``Attention``, ViTs) or
:func:`register_causal` (a causal LM's transformers ``LlamaAttention``, under the same name and options as its
timm counterpart); importing :mod:`core.attention` imports them all. A variant's options are the keyword
arguments (with defaults) of its constructor, so the class is the single source of names and defaults.
:func:`swap_attention` and :func:`swap_model` pick the kind from the module they find; :data:`NOT_CAUSAL`
says why the other variants are refused for a language model.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from timm.layers import Attention as TimmAttention
from torch import nn

from core.attention._base import AttentionVariant
from core.attention._llama import CausalAttention, LlamaCalibration, is_llama_attention
from core.errors import RankscopeError, close_matches_hint
from core.layers import set_module
from core.options import keyword_defaults
from core.profile.latency import capture_inputs

_VARIANTS: dict[str, type[AttentionVariant]] = {}
_CAUSAL: dict[str, type[CausalAttention]] = {}

NOT_CAUSAL = {
    "linformer": "it projects the sequence axis, so every projected key and value mixes all tokens, later ones included",
    "nystrom": "its landmarks are means over segments of the whole sequence, so every output reads later tokens",
    "nmf": "it factorizes the whole token matrix at once, so every output depends on every token, later ones included",
    "pnmf": "its projective factorization is fitted to the whole token matrix, so every output depends on later tokens",
    "ntf": "it factorizes the whole heads x tokens x channels tensor, so every output depends on later tokens",
}
"""Why each registered variant without a causal form cannot stand in for a language model's attention."""


def register_variant(cls: type[AttentionVariant]) -> type[AttentionVariant]:
    """Class decorator: register a variant under its ``variant`` name."""
    if cls.variant in _VARIANTS:
        raise ValueError(f"attention variant {cls.variant!r} is registered twice")
    _VARIANTS[cls.variant] = cls
    return cls


def register_causal(cls: type[CausalAttention]) -> type[CausalAttention]:
    """Class decorator: register a causal variant under its ``variant`` name (that of a timm variant, same options)."""
    if cls.variant in _CAUSAL:
        raise ValueError(f"causal attention variant {cls.variant!r} is registered twice")
    _CAUSAL[cls.variant] = cls
    return cls


def list_variants() -> list[str]:
    """Names of all variants, in registration order."""
    return list(_VARIANTS)


def causal_variants() -> list[str]:
    """Names of the variants that can stand in for a causal LM's attention (``LlamaAttention``), in registration order."""
    return list(_CAUSAL)


def model_variants(model: nn.Module) -> list[str]:
    """The variants ``model``'s attention can be swapped for: :func:`causal_variants` for a causal LM, else all."""
    causal = any(is_llama_attention(m) or isinstance(m, CausalAttention) for m in model.modules())
    return causal_variants() if causal else list_variants()


def get_causal_variant(name: str) -> type[CausalAttention]:
    """The causal class registered under ``name``.

    Raises
    ------
    RankscopeError
        One line: why variant ``name`` cannot be causal (:data:`NOT_CAUSAL`), or that no variant has that name.
    """
    if name in _CAUSAL:
        return _CAUSAL[name]
    get_variant(name)  # an unknown name: its own message, with close matches
    reason = NOT_CAUSAL.get(name, "it has no causal form")
    raise RankscopeError(f"{name} cannot replace a causal language model's attention: {reason}; "
                         f"causal variants: {', '.join(_CAUSAL)}")


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


def is_swappable(module: nn.Module) -> bool:
    """Whether ``module`` is an attention a variant can be built from: a timm ``Attention`` or a ``LlamaAttention``."""
    return isinstance(module, TimmAttention) or is_llama_attention(module)


def attention_paths(model: nn.Module) -> list[str]:
    """``named_modules`` paths of the timm ``Attention`` and transformers ``LlamaAttention`` modules and of
    already-swapped variants (timm or causal) in ``model``, in module order (a causal LM's: one per layer)."""
    return [name for name, m in model.named_modules()
            if is_swappable(m) or isinstance(m, (AttentionVariant, CausalAttention))]


def check_options(variant: str, allowed: dict[str, Any], hyper: dict[str, Any]) -> None:
    """Raise :class:`RankscopeError` naming any option of ``hyper`` not in ``allowed`` (with close matches)."""
    unknown = sorted(set(hyper) - set(allowed))
    if unknown:
        hint = close_matches_hint(unknown[0], list(allowed))
        raise RankscopeError(f"{variant} takes no option {', '.join(unknown)}{hint}; options: {', '.join(allowed) or 'none'}")


def swap_attention(attn: nn.Module, variant: str, *, seq_len: int | None = None,
                   calibration: torch.Tensor | LlamaCalibration | None = None, **hyper: Any) -> nn.Module:
    """A new ``variant`` module standing in for ``attn`` (left untouched), reusing its weights.

    Parameters
    ----------
    attn : a ``timm.layers.Attention``, or a transformers ``LlamaAttention`` (then a causal variant is built; see
        :func:`causal_variants`). A variant cannot be swapped again: swap the original.
    variant : a name from :func:`list_variants` (:func:`causal_variants` for a ``LlamaAttention``).
    seq_len : tokens per sequence (needed by ``linformer``).
    calibration : needed by ``lowrank-qkv`` with ``method="aa_svd"``: the tokens ``(B, N, C)`` entering a timm
        ``attn``; for a ``LlamaAttention`` a :class:`~core.attention._llama.LlamaCalibration` (:func:`swap_model`
        makes it from token ids).
    **hyper : options from :func:`variant_options`; omitted ones take their defaults.

    Raises
    ------
    RankscopeError
        Unknown variant or option, a bad option value, a variant with no causal form for a ``LlamaAttention``,
        or a module that is neither attention.
    """
    if is_llama_attention(attn) or isinstance(attn, CausalAttention):
        causal = get_causal_variant(variant)
        check_options(variant, keyword_defaults(causal.__init__), hyper)
        return causal.from_llama(attn, calibration=calibration, **hyper)
    cls = get_variant(variant)
    check_options(variant, variant_options(variant), hyper)
    return cls.from_timm(attn, seq_len=seq_len, calibration=calibration, **hyper)


def vit_seq_len(model: nn.Module) -> int | None:
    """Tokens per image of a timm ``VisionTransformer`` (patches plus class/register tokens), else ``None``."""
    patch_embed = getattr(model, "patch_embed", None)
    if patch_embed is None or not hasattr(patch_embed, "num_patches"):
        return None
    return int(patch_embed.num_patches) + int(getattr(model, "num_prefix_tokens", 0))


def chosen_layers(model: nn.Module, layers: Sequence[int | str] | None) -> list[str]:
    """Paths of the attention layers ``layers`` names in ``model``: every swappable one for ``None``; else each an
    index into :func:`attention_paths` (negative from the end: ``[-4, -3, -2, -1]`` are the last four) or a path.

    Raises
    ------
    RankscopeError
        An index out of range, a path that is not an attention layer (with close matches), a layer named twice,
        or no layer at all.
    """
    paths = attention_paths(model)
    if layers is None:
        return [p for p in paths if is_swappable(model.get_submodule(p))]
    chosen = []
    for layer in layers:
        if isinstance(layer, int):
            if not -len(paths) <= layer < len(paths):
                raise RankscopeError(f"attention layer {layer} is out of range: {type(model).__name__} has {len(paths)} "
                                     f"(0 to {len(paths) - 1}, or negative from the end)")
            layer = paths[layer]
        elif layer not in paths:
            raise RankscopeError(f"{layer!r} is not an attention layer of {type(model).__name__}"
                                 f"{close_matches_hint(str(layer), paths)}")
        if layer in chosen:
            raise RankscopeError(f"attention layer {layer} is chosen twice")
        chosen.append(layer)
    if not chosen:
        raise RankscopeError("no attention layer chosen: give at least one index or path, or None for all")
    return chosen


def layer_calibration(model: nn.Module, calibration: torch.Tensor, paths: list[str]) -> dict[str, Any]:
    """What each attention at ``paths`` receives in ``model(calibration)``, as :func:`swap_attention` takes it."""
    llama = [p for p in paths if is_llama_attention(model.get_submodule(p))]
    names = [p for p in paths if p not in llama] + [f"{p}.{part}" for p in llama for part in ("q_proj", "o_proj")]
    with torch.no_grad():
        got = {name: args[0] for name, (args, _) in capture_inputs(model, calibration, names).items()}
    return {p: LlamaCalibration(got[f"{p}.q_proj"], got[f"{p}.o_proj"]) if p in llama else got[p] for p in paths}


def swap_model(model: nn.Module, variant: str, *, layers: Sequence[int | str] | None = None, seq_len: int | None = None,
               calibration: torch.Tensor | None = None, **hyper: Any) -> nn.Module:
    """A copy of ``model`` with its attention layers replaced by ``variant`` (``model`` is left untouched).

    Parameters
    ----------
    model : a model with timm ``Attention`` modules (a ViT), or a causal LM with ``LlamaAttention`` modules
        (:class:`core.models.language.CausalLM`), whose layers take the causal form of ``variant``.
    variant, hyper : as :func:`swap_attention`.
    layers : which attention layers, as :func:`chosen_layers` reads them (default: every one not yet swapped).
    seq_len : tokens per sequence; read from a timm ``VisionTransformer`` when not given.
    calibration : a batch of MODEL inputs (images; token ids ``(B, T)`` for an LM); each attention is
        calibrated on what it receives from it.

    Raises
    ------
    RankscopeError
        No attention to swap, a bad ``layers``, or what :func:`swap_attention` refuses (for an LM: a variant with no
        causal form, checked before anything is copied).
    """
    paths = chosen_layers(model, layers)
    if not paths:
        raise RankscopeError(f"{type(model).__name__} has no timm Attention or transformers LlamaAttention module to swap")
    if any(is_llama_attention(model.get_submodule(p)) for p in paths):
        get_causal_variant(variant)
    tokens: dict[str, Any] = dict.fromkeys(paths)
    if calibration is not None:
        tokens = layer_calibration(model, calibration, paths)
    seq_len = seq_len if seq_len is not None else vit_seq_len(model)
    new = copy.deepcopy(model)
    for path in paths:
        set_module(new, path, swap_attention(new.get_submodule(path), variant, seq_len=seq_len, calibration=tokens[path], **hyper))
    return new

"""Cached calls of the Text page (``core.evaluate.continuations``): a prompt's length in the model's tokens, and the
dense and a plan's compressed model's greedy continuations of it, each token scored under both models.

The continuations are cached by plan, prompt and number of new tokens, so returning to the page runs no model.
"""
from __future__ import annotations

import streamlit as st

from core.errors import RankscopeError
from core.evaluate.continuations import Continuations, encode_prompt, greedy_continuations
from core.models.language import load_tokenizer
from core.plan import Plan
from core.profile.context import torch_threads
from dashboard.cached.models import model_and_cfg
from dashboard.cached.plans import planned_model


def tokenizer_folder(name: str, arch: str) -> str:
    """The folder of the model's tokenizer. Raises ``RankscopeError`` for a model without one."""
    cfg = model_and_cfg(name, arch)[1]
    if not cfg.tokenizer:
        raise RankscopeError(f"{cfg.name} has no tokenizer: the Text page needs one saved beside the weights "
                             "(save_pretrained of the tokenizer into the model's folder)")
    return cfg.tokenizer


@st.cache_data(show_spinner=False, max_entries=64)
def prompt_length(name: str, arch: str, prompt: str) -> int:
    """How many tokens of the model's tokenizer ``prompt`` is (no special tokens); raises ``RankscopeError`` for an
    empty prompt or a model without a tokenizer."""
    return int(encode_prompt(load_tokenizer(tokenizer_folder(name, arch)), prompt).shape[1])


@st.cache_data(show_spinner="Writing both continuations…", max_entries=32)
def continuations(name: str, arch: str, data: str, samples: int, device: str, threads: int, plan: Plan, prompt: str,
                  new_tokens: int) -> Continuations:
    """``core.evaluate.continuations.greedy_continuations`` of ``prompt`` by the dense model and by the model with
    ``plan`` applied (``cached.planned_model``, as the Plan page builds it; the dense model itself for an empty plan).
    Raises ``RankscopeError`` for a bad prompt or a plan that does not fit."""
    dense, _ = model_and_cfg(name, arch)
    tokenizer = load_tokenizer(tokenizer_folder(name, arch))
    model = planned_model(name, arch, data, samples, device, plan) if plan.layers or plan.groups else dense
    with torch_threads(threads):
        return greedy_continuations(dense, model, tokenizer, prompt, new_tokens)

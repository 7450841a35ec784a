"""Cached calls into ``core`` shared by the pages, and the session-state keys with their defaults.

Models and datasets are resources (shared, not copied); profiles and tables are data (cached by value).
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core.data import eval_subset, load_dataset
from core.models import create_model

DEFAULTS = {"model": "fmnist-resnet", "samples": 1000, "batch": 1, "threads": 1}


def init_state() -> None:
    """Put every key's default into ``st.session_state`` once per session."""
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)


@st.cache_resource(show_spinner="Loading model…")
def model_and_cfg(name: str):
    """The model (eval mode) and its cfg; raises ``RankscopeError`` for a bad name."""
    return create_model(name)


@st.cache_resource(show_spinner="Loading data…")
def eval_data(model_name: str, samples: int):
    """The model's own evaluation subset (``None`` when the model has no shipped dataset)."""
    _, cfg = model_and_cfg(model_name)
    if cfg.dataset in ("", "imagenet"):
        return None
    return eval_subset(load_dataset(cfg.dataset, cfg), samples)


@st.cache_data(show_spinner="Measuring…")
def profile(model_name: str, samples: int, batch: int, threads: int) -> dict:
    """The baseline profile of a model as a dict (see ``core.profile.ProfileResult.to_dict``)."""
    from core.profile import profile_model

    model, cfg = model_and_cfg(model_name)
    return profile_model(model, cfg, dataset=eval_data(model_name, samples), batch=batch, threads=threads).to_dict()


@st.cache_data(show_spinner="Listing layers…")
def layers(model_name: str) -> pd.DataFrame:
    """The per-layer table of ``core.layers.describe_layers``."""
    from core.layers import describe_layers

    model, cfg = model_and_cfg(model_name)
    return describe_layers(model, cfg)

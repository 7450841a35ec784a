"""Cached calls about channel groups (``core.resample``, ``core.prune``): the Sampling density page's table and spectra."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core.errors import RankscopeError
from core.profile import example_input
from core.prune import prunable_groups
from core.resample import capacity, group_spectrum as spectrum
from dashboard.cached.models import model_and_cfg


@st.cache_data(show_spinner="Finding channel groups and their spectra…", max_entries=16)
def capacities(name: str, arch: str, energy: float) -> pd.DataFrame:
    """Every channel group with its capacity estimate (``core.resample.capacity``) and whether pruning can take it."""
    model, cfg = model_and_cfg(name, arch)
    table = capacity(model, example_input(cfg, 1), energy)
    try:
        prunable = set(prunable_groups(model, example_input(cfg, 1)))
    except RankscopeError:  # e.g. a capsule network: Torch-Pruning cannot take it
        prunable = set()
    return table.assign(prunable=table["group"].isin(prunable))


@st.cache_data(show_spinner="Reading the channel spectrum…", max_entries=64)
def group_spectrum(name: str, arch: str, group: str) -> pd.DataFrame:
    """``core.resample.group_spectrum`` of one group."""
    model, cfg = model_and_cfg(name, arch)
    return spectrum(model, example_input(cfg, 1), group)

"""Cached calls about one layer (the Layer explorer): the layer rebuilt at a rank, its latency, spectra and
output error (``core.layers.study``)."""
from __future__ import annotations

import pandas as pd
import streamlit as st
import torch
from torch import nn

from core.decompose import get_method
from core.decompose.rank import Rank, rank_grid
from core.layers import layer_input
from core.layers.study import build_layer, curve_points, error_curve as curve, output_error, spectra as layer_spectra
from core.profile import example_input, measure_latency
from dashboard.cached.models import calibration_images, model_and_cfg, plan_evaluator


def _calibration(name: str, arch: str, data: str, path: str, method: str) -> torch.Tensor | None:
    """What the layer at ``path`` receives from the calibration images, for a data-aware ``method`` (else ``None``)."""
    if not get_method(method).needs_calibration:
        return None
    return layer_input(model_and_cfg(name, arch)[0], path, calibration_images(name, arch, data))


@st.cache_resource(show_spinner="Building the layer…", max_entries=256)
def replacement(name: str, arch: str, data: str, path: str, method: str, rank: Rank) -> nn.Module:
    """The layer at ``path`` rebuilt by ``method`` at ``rank`` (from the cached factorization)."""
    model, _ = model_and_cfg(name, arch)
    images = calibration_images(name, arch, data) if get_method(method).needs_calibration else None
    return build_layer(model, path, method, rank, images=images)


@st.cache_data(show_spinner="Timing the layer…", max_entries=64)
def layer_latency(name: str, arch: str, data: str, path: str, method: str, rank: Rank, batch: int, threads: int) -> float:
    """Median ms of the rebuilt layer's forward on the input it gets at ``batch`` (the dense layer for method "")."""
    model, cfg = model_and_cfg(name, arch)
    module = replacement(name, arch, data, path, method, rank) if method else model.get_submodule(path)
    x = layer_input(model, path, example_input(cfg, batch))
    return measure_latency(module, x, threads=threads, repeats=10).median_ms


@st.cache_data(show_spinner="Reading the spectrum…", max_entries=32)
def spectra(name: str, arch: str, data: str, path: str, method: str) -> list:
    """The layer's spectra for ``method`` (``core.layers.study.spectra``)."""
    model, _ = model_and_cfg(name, arch)
    return layer_spectra(get_method(method), model.get_submodule(path), _calibration(name, arch, data, path, method))


@st.cache_resource(show_spinner="Capturing the layer's inputs…", max_entries=8)
def probe_inputs(name: str, arch: str, data: str, samples: int, path: str) -> torch.Tensor:
    """What the layer receives from up to 128 evaluation images."""
    model, _ = model_and_cfg(name, arch)
    return layer_input(model, path, plan_evaluator(name, arch, data, samples, "cpu").cached.batches[0][0][:128])


@st.cache_data(show_spinner="Building the layer at a range of ranks…", max_entries=32)
def error_curve(name: str, arch: str, data: str, samples: int, path: str, method: str) -> pd.DataFrame:
    """Output error of the layer versus rank on :func:`probe_inputs` (``core.layers.study.error_curve``)."""
    model, _ = model_and_cfg(name, arch)
    module, m = model.get_submodule(path), get_method(method)
    return curve(module, m, probe_inputs(name, arch, data, samples, path), rank_grid(m, module, curve_points(m)),
                 calibration=_calibration(name, arch, data, path, method))


@st.cache_data(show_spinner=False, max_entries=64)
def layer_error(name: str, arch: str, data: str, samples: int, path: str, method: str, rank: Rank) -> float:
    """Output error of the layer rebuilt at ``rank`` on :func:`probe_inputs`."""
    model, _ = model_and_cfg(name, arch)
    built = replacement(name, arch, data, path, method, rank)
    return output_error(model.get_submodule(path), built, probe_inputs(name, arch, data, samples, path))

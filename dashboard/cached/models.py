"""The model, its data and its evaluator, and the tables of it the pages share.

Models, datasets and evaluators are resources (``st.cache_resource``: shared, not copied); profiles and
tables are data (``st.cache_data``: cached by value). Every function takes the model's registry name and
``arch`` (for uploaded weights).
"""
from __future__ import annotations

import pandas as pd
import streamlit as st
import torch

from core.data import eval_subset, labelled_batch, load_dataset
from core.evaluate import PlanEvaluator
from core.layers.table import describe_layers
from core.models import create_model
from core.plan import weights_hash
from core.plan.cost import layer_sites
from core.profile import count_flops, count_params, example_input, measure_layer_latency, profile_model


@st.cache_resource(show_spinner="Loading model…", max_entries=4)
def model_and_cfg(name: str, arch: str = ""):
    """The model (eval mode) and its cfg; raises ``RankscopeError`` for a bad name or checkpoint."""
    return create_model(name, arch=arch or None)


def data_name(name: str, arch: str, data: str) -> str:
    """The evaluation data asked for, else the model's own dataset ("" when it has none shipped)."""
    _, cfg = model_and_cfg(name, arch)
    return data or ("" if cfg.dataset in ("", "imagenet") else cfg.dataset)


@st.cache_resource(show_spinner="Loading data…", max_entries=4)
def test_set(name: str, arch: str, data: str):
    """The whole evaluation split for the model (``None`` without data)."""
    _, cfg = model_and_cfg(name, arch)
    dataset = data_name(name, arch, data)
    return load_dataset(dataset, cfg) if dataset else None


def eval_data(name: str, arch: str, samples: int, data: str = ""):
    """The seeded evaluation subset (``None`` when the model has no data)."""
    full = test_set(name, arch, data)
    return None if full is None else eval_subset(full, samples)


@st.cache_resource(show_spinner="Loading calibration images…", max_entries=4)
def calibration_data(name: str, arch: str, data: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Model inputs and their labels for data-aware methods and gradient-based pruning scores (training split
    where available), ``None`` without data."""
    _, cfg = model_and_cfg(name, arch)
    dataset = data_name(name, arch, data)
    return labelled_batch(dataset, cfg) if dataset else None


def calibration_images(name: str, arch: str, data: str) -> torch.Tensor | None:
    """The inputs of :func:`calibration_data`."""
    found = calibration_data(name, arch, data)
    return None if found is None else found[0]


@st.cache_resource(show_spinner="Preparing the evaluation batches…", max_entries=4)
def plan_evaluator(name: str, arch: str, data: str, samples: int, device: str) -> PlanEvaluator | None:
    """The one :class:`core.evaluate.PlanEvaluator` of the model on ``samples`` evaluation images, calibrated on
    :func:`calibration_data` (``None`` without data). It decides how a plan is scored and caches the rebuilt
    layers and built models by plan."""
    model, cfg = model_and_cfg(name, arch)
    subset = eval_data(name, arch, samples, data)
    if subset is None:
        return None
    return PlanEvaluator(model, cfg, subset, data=calibration_data(name, arch, data), device=device)


@st.cache_resource(show_spinner="Locating layers…", max_entries=4)
def sites(name: str, arch: str) -> dict:
    """Where each compressible layer runs (input size, tokens): ``core.plan.cost.layer_sites``."""
    model, cfg = model_and_cfg(name, arch)
    return layer_sites(model, example_input(cfg, 1), list(compressible(name, arch)["name"]))


@st.cache_data(show_spinner="Measuring…", max_entries=16)
def profile(model_name: str, samples: int, batch: int, threads: int, arch: str = "", data: str = "", device: str = "cpu") -> dict:
    """The baseline profile of a model as a dict (see ``core.profile.ProfileResult.to_dict``)."""
    model, cfg = model_and_cfg(model_name, arch)
    return profile_model(model, cfg, dataset=eval_data(model_name, arch, samples, data), batch=batch, threads=threads,
                         device=device).to_dict()


@st.cache_data(show_spinner="Counting…", max_entries=16)
def baseline_counts(name: str, arch: str) -> dict:
    """Parameters and FLOPs per sample of the dense model."""
    model, cfg = model_and_cfg(name, arch)
    return {"params": count_params(model), "flops": int(count_flops(model, example_input(cfg, 1)).per_sample)}


@st.cache_data(show_spinner="Listing layers…", max_entries=16)
def layers(model_name: str, arch: str = "") -> pd.DataFrame:
    """The per-layer table of ``core.layers.table.describe_layers``."""
    model, cfg = model_and_cfg(model_name, arch)
    return describe_layers(model, cfg)


@st.cache_data(show_spinner="Listing layers…", max_entries=16)
def compressible(name: str, arch: str = "") -> pd.DataFrame:
    """The rows of :func:`layers` that some decomposition method applies to."""
    table = layers(name, arch)
    return table[table["methods"].map(len) > 0].reset_index(drop=True)


@st.cache_data(show_spinner="Timing every layer…", max_entries=16)
def layer_latencies(name: str, arch: str, batch: int, threads: int) -> dict[str, float]:
    """Median ms of each compressible layer's own forward inside the model, at ``batch``."""
    model, cfg = model_and_cfg(name, arch)
    timed = measure_layer_latency(model, example_input(cfg, batch), list(compressible(name, arch)["name"]),
                                  threads=threads, repeats=10)
    return {path: result.median_ms for path, result in timed.items()}


@st.cache_data(show_spinner="Hashing the weights…", max_entries=16)
def weights_digest(name: str, arch: str) -> str:
    """``core.plan.weights_hash`` of the model, recorded in exported plans."""
    return weights_hash(model_and_cfg(name, arch)[0])

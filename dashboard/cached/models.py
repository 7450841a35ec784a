"""The model, its data and its evaluator, and the tables of it the pages share.

Models, datasets and evaluators are resources (``st.cache_resource``: shared, not copied); profiles and
tables are data (``st.cache_data``: cached by value). Every function takes the model's registry name and
``arch`` (for uploaded weights).
"""
from __future__ import annotations

import pandas as pd
import streamlit as st
import torch

from core.data import default_dataset, eval_subset, labelled_batch, load_dataset, training_data
from core.task.labels import NO_LABEL
from core.evaluate import PlanEvaluator
from core.layers.table import describe_layers
from core.models import create_model
from core.plan import weights_hash
from core.plan.cost import layer_sites
from core.profile import count_flops, count_params, example_input, measure_layer_latency, profile_model

FALLBACK_DATA = "photos"  # unlabelled real photos (core.data.photos): what scores a model no data set of rankscope fits


@st.cache_resource(show_spinner="Loading model…", max_entries=4)
def model_and_cfg(name: str, arch: str = ""):
    """The model (eval mode) and its cfg; raises ``RankscopeError`` for a bad name or checkpoint."""
    return create_model(name, arch=arch or None)


def data_name(name: str, arch: str, data: str) -> str:
    """The evaluation data asked for, else the model's own dataset where rankscope loads it, else :data:`FALLBACK_DATA`
    (unlabelled photos: the plans are scored by their fidelity to the dense model)."""
    _, cfg = model_and_cfg(name, arch)
    return default_dataset(cfg, data) or FALLBACK_DATA


def is_fallback(name: str, arch: str, data: str) -> bool:
    """Whether :func:`data_name` fell back to :data:`FALLBACK_DATA` (no data asked for, none of the model's own)."""
    return not default_dataset(model_and_cfg(name, arch)[1], data)


@st.cache_resource(show_spinner="Loading data…", max_entries=4)
def test_set(name: str, arch: str, data: str):
    """The whole evaluation split for the model (of :func:`data_name`)."""
    return load_dataset(data_name(name, arch, data), model_and_cfg(name, arch)[1])


def eval_data(name: str, arch: str, samples: int, data: str = ""):
    """The seeded evaluation subset."""
    return eval_subset(test_set(name, arch, data), samples)


@st.cache_resource(show_spinner="Loading calibration data…", max_entries=4)
def calibration_set(name: str, arch: str, data: str, samples: int):
    """The seeded subset of the calibration split (``core.data.training_data``) plans are chosen on: never the
    evaluation split the page reports on."""
    return eval_subset(training_data(data_name(name, arch, data), model_and_cfg(name, arch)[1]), samples)


@st.cache_resource(show_spinner="Loading calibration images…", max_entries=4)
def calibration_data(name: str, arch: str, data: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Model inputs and their labels for data-aware methods and gradient-based pruning scores
    (``core.data.labelled_batch``: the training split, or the training source of a data set without one, e.g. the
    unlabelled calibration photos of imagenet-samples)."""
    return labelled_batch(data_name(name, arch, data), model_and_cfg(name, arch)[1])


def calibration_images(name: str, arch: str, data: str) -> torch.Tensor:
    """The inputs of :func:`calibration_data`."""
    return calibration_data(name, arch, data)[0]


def calibration_labelled(name: str, arch: str, data: str) -> bool:
    """Whether :func:`calibration_data` has labels, which gradient-based pruning scores need (photos have none; they
    calibrate imagenet-samples too)."""
    return bool((calibration_data(name, arch, data)[1] != NO_LABEL).all())


@st.cache_resource(show_spinner="Preparing the evaluation batches…", max_entries=8)
def plan_evaluator(name: str, arch: str, data: str, samples: int, device: str, task: str = "") -> PlanEvaluator:
    """The :class:`core.evaluate.PlanEvaluator` of the model on ``samples`` evaluation images under ``task``
    (``""``: the data's own, classification with labels and fidelity without), calibrated on :func:`calibration_data`.
    It decides how a plan is scored and caches the rebuilt layers and built models by plan."""
    model, cfg = model_and_cfg(name, arch)
    return PlanEvaluator(model, cfg, eval_data(name, arch, samples, data), task=task or None,
                         data=calibration_data(name, arch, data), device=device)


@st.cache_resource(show_spinner="Locating layers…", max_entries=4)
def sites(name: str, arch: str) -> dict:
    """Where each compressible layer runs (input size, tokens): ``core.plan.cost.layer_sites``."""
    model, cfg = model_and_cfg(name, arch)
    return layer_sites(model, example_input(cfg, 1), list(compressible(name, arch)["name"]))


@st.cache_data(show_spinner="Measuring…", max_entries=16)
def profile(model_name: str, batch: int, threads: int, arch: str = "", device: str = "cpu") -> dict:
    """The baseline's costs as a dict (``core.profile.ProfileResult.to_dict``, without evaluation: the pages score
    the model through ``cached.scores``, as every plan)."""
    model, cfg = model_and_cfg(model_name, arch)
    return profile_model(model, cfg, batch=batch, threads=threads, device=device).to_dict()


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

"""Cached calls of the Images page (``core.evaluate.comparison``): the set5-like photos, one whole photo upscaled by
the dense model, by a plan's compressed model and by bicubic, a crop of them compared, and a uniform starting plan.

The upscaled photos are cached by plan and photo, so moving the crop re-runs no model: :func:`comparison` only
cuts the cached images again.
"""
from __future__ import annotations

import streamlit as st
import torch
from torch.utils.data import Dataset

from core.data import load_dataset
from core.data.sr_photos import SET5_LIKE_NAME
from core.evaluate.comparison import Crop, ImageComparison, compare_outputs, upscale
from core.plan import Plan
from core.plan.starting import make_plan
from core.profile.context import torch_threads
from core.profile.quality import dataset_attribute
from core.task import BicubicUpscale
from dashboard.cached.models import model_and_cfg
from dashboard.cached.plans import planned_model


@st.cache_resource(show_spinner="Loading the set5-like photos…", max_entries=4)
def sr_photos(name: str, arch: str) -> Dataset:
    """The ``set5-like`` photos as (LR, HR) pairs at the model's scale (``core.data.sr_photos``; ``.names`` in item
    order). Raises ``RankscopeError`` for a model that is not an RGB super-resolution model."""
    return load_dataset(SET5_LIKE_NAME, model_and_cfg(name, arch)[1])


@st.cache_data(show_spinner="Upscaling the whole photo…", max_entries=32)
def upscaled(name: str, arch: str, data: str, samples: int, device: str, threads: int, plan: Plan,
             photo: int) -> torch.Tensor:
    """Photo ``photo`` of :func:`sr_photos` upscaled whole (3, H, W) in [0, 1] by the model with ``plan`` applied
    (``cached.planned_model``, as the Plan page builds it; the dense model itself for an empty plan), on tiles where
    the photos say so. Raises ``RankscopeError`` for a plan that does not fit."""
    dense, _ = model_and_cfg(name, arch)
    model = planned_model(name, arch, data, samples, device, plan) if plan.layers or plan.groups else dense
    photos = sr_photos(name, arch)
    with torch_threads(threads):
        return upscale(model, photos[photo][0], dataset_attribute(photos, "tiling", None))


@st.cache_data(show_spinner="Upscaling the photo by bicubic…", max_entries=16)
def bicubic(name: str, arch: str, photo: int) -> torch.Tensor:
    """Photo ``photo`` of :func:`sr_photos` upscaled by PIL's bicubic (the baseline), (3, H, W) in [0, 1]."""
    return upscale(BicubicUpscale(model_and_cfg(name, arch)[1].scale), sr_photos(name, arch)[photo][0])


@st.cache_data(show_spinner="Comparing the crop…", max_entries=64)
def comparison(name: str, arch: str, data: str, samples: int, device: str, threads: int, plan: Plan, photo: int,
               crop: Crop) -> ImageComparison:
    """``core.evaluate.comparison.compare_outputs`` of ``crop`` of photo ``photo``: the HR photo, bicubic, the dense
    model and the model with ``plan`` applied (each :func:`upscaled`, so a new crop runs no model)."""
    scale = model_and_cfg(name, arch)[1].scale
    dense = upscaled(name, arch, data, samples, device, threads, Plan(name), photo)
    compressed = upscaled(name, arch, data, samples, device, threads, plan, photo)
    hr = sr_photos(name, arch)[photo][1]
    return compare_outputs(hr, bicubic(name, arch, photo), dense, compressed, scale, crop)


@st.cache_data(show_spinner="Choosing each layer's rank…", max_entries=32)
def uniform_plan(name: str, arch: str, method: str, fraction: float) -> Plan:
    """``core.plan.starting.make_plan``: ``method`` on every layer it fits, each keeping ``fraction`` of its
    parameters."""
    model, cfg = model_and_cfg(name, arch)
    return make_plan(model, cfg, method, ratio=fraction)

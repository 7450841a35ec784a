"""Session-state keys with their defaults, and the cached calls into ``core`` the pages share.

Models, datasets, evaluators and built layers are resources (``st.cache_resource``: shared, not
copied); profiles, tables and accuracies are data (``st.cache_data``: cached by value). Every cached
function takes the model's registry name and ``arch`` (for uploaded weights), so a rank change
re-uses the model, its factorizations and the cached activations and only rebuilds one layer.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st
import torch
from torch import nn

from core.errors import RankscopeError
from core.layer_eval import INTERACTIVE_SAMPLES, LayerEvaluator
from core.models import create_model
from core.profile.context import torch_threads
from core.plan import LayerEntry, Plan, plan_rank
from core.sweep import DEFAULT_FOLDER

DEFAULTS = {
    "model": "fmnist-resnet",  # the model every page works on: registry name, or file:<path> of an upload
    "arch": "",  # architecture of an uploaded weights file
    "source": "shipped",  # which Model-page input chose it: "shipped", "custom" or "upload"
    "shipped": "fmnist-resnet",
    "custom": "",  # a timm:/torchvision: name typed in
    "upload_arch": "",
    "data": "",  # evaluation data; "" = the model's own dataset
    "samples": INTERACTIVE_SAMPLES,  # evaluation subset behind every live accuracy
    "batch": 1,  # batch of latency and memory runs
    "threads": 1,
    "device": "cpu",
    "sweep_layers": (),  # the Sensitivity page's sweep (see Grid): layers, () = every compressible layer
    "sweep_methods": (),  # methods, () = each layer's default
    "sweep_points": 6,  # ranks per layer and method
    "sweep_folder": str(DEFAULT_FOLDER),  # the sweep cache, shared with `rankscope sweep` (relative to the server's folder)
}


def init_state() -> None:
    """Put every key's default into ``st.session_state`` once per session.

    Also hands a page opened by a direct link (``/plan``) on a fresh server back to ``app.py``: Streamlit
    then still treats ``dashboard/pages/`` as a legacy pages folder and runs the page script alone, without
    the navigation and page config, until some script calls ``st.navigation``.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory and not st.session_state.get("_started"):  # once, before any click
        PagesManager.uses_pages_directory = False
        st.rerun()
    st.session_state["_started"] = True
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)


def keep(name: str, default: Any = None, then: Callable[[], None] | None = None) -> dict:
    """Widget arguments that bind a widget to the session value ``name`` across pages.

    Streamlit forgets a widget's own key when a page without that widget runs; the widget therefore
    gets a private key, seeded from ``st.session_state[name]`` (``default`` the first time) and copied
    back on change, after which ``then()`` runs. Pass no ``value``/``index`` to the widget itself.
    """
    widget = f"_w_{name}"
    st.session_state.setdefault(name, default)
    st.session_state[widget] = st.session_state[name]
    return {"key": widget, "on_change": _store, "args": (name, widget, then)}


def _store(name: str, widget: str, then: Callable[[], None] | None) -> None:
    st.session_state[name] = st.session_state[widget]
    if then is not None:
        then()


@dataclass(frozen=True)
class Choice:
    """What the Model page chose; every other page computes for this."""

    model: str
    arch: str
    data: str
    samples: int
    batch: int
    threads: int
    device: str

    @property
    def key(self) -> tuple[str, str]:
        return self.model, self.arch


def choice() -> Choice:
    """The current :class:`Choice` from the session."""
    init_state()
    s = st.session_state
    return Choice(s["model"], s["arch"], s["data"], int(s["samples"]), int(s["batch"]), int(s["threads"]), s["device"])


# --- resources ------------------------------------------------------------------------------
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
    from core.data import load_dataset

    _, cfg = model_and_cfg(name, arch)
    dataset = data_name(name, arch, data)
    return load_dataset(dataset, cfg) if dataset else None


def eval_data(name: str, arch: str, samples: int, data: str = ""):
    """The seeded evaluation subset (``None`` when the model has no data)."""
    from core.data import eval_subset

    full = test_set(name, arch, data)
    return None if full is None else eval_subset(full, samples)


@st.cache_resource(show_spinner="Preparing the evaluation batches…", max_entries=4)
def evaluator(name: str, arch: str, data: str, samples: int, device: str) -> LayerEvaluator | None:
    """The shared :class:`LayerEvaluator` on the evaluation subset (``None`` without data)."""
    model, _ = model_and_cfg(name, arch)
    subset = eval_data(name, arch, samples, data)
    return None if subset is None else LayerEvaluator(model, subset, device=device)


@st.cache_resource(show_spinner="Loading calibration images…", max_entries=4)
def calibration_data(name: str, arch: str, data: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Model inputs and their labels for data-aware methods and gradient-based pruning scores (training split
    where available), ``None`` without data."""
    from core.data import labelled_batch

    _, cfg = model_and_cfg(name, arch)
    dataset = data_name(name, arch, data)
    return labelled_batch(dataset, cfg) if dataset else None


def calibration_images(name: str, arch: str, data: str) -> torch.Tensor | None:
    """The inputs of :func:`calibration_data`."""
    found = calibration_data(name, arch, data)
    return None if found is None else found[0]


@st.cache_resource(show_spinner="Building the layer…", max_entries=256)
def replacement(name: str, arch: str, data: str, path: str, method: str, rank) -> nn.Module:
    """The layer at ``path`` rebuilt by ``method`` at ``rank`` (from the cached factorization)."""
    from core.layer_study import build_layer

    model, _ = model_and_cfg(name, arch)
    images = calibration_images(name, arch, data) if needs_data(method) else None
    return build_layer(model, path, method, rank, images=images)


def needs_data(method: str) -> bool:
    from core.decompose import get_method

    return get_method(method).needs_calibration


@st.cache_resource(show_spinner="Locating layers…", max_entries=4)
def sites(name: str, arch: str) -> dict:
    """Where each compressible layer runs (input size, tokens): ``core.plan_cost.layer_sites``."""
    from core.plan_cost import layer_sites
    from core.profile import example_input

    model, cfg = model_and_cfg(name, arch)
    return layer_sites(model, example_input(cfg, 1), list(compressible(name, arch)["name"]))


# --- data -----------------------------------------------------------------------------------
@st.cache_data(show_spinner="Measuring…", max_entries=16)
def profile(model_name: str, samples: int, batch: int, threads: int, arch: str = "", data: str = "", device: str = "cpu") -> dict:
    """The baseline profile of a model as a dict (see ``core.profile.ProfileResult.to_dict``)."""
    from core.profile import profile_model

    model, cfg = model_and_cfg(model_name, arch)
    return profile_model(model, cfg, dataset=eval_data(model_name, arch, samples, data), batch=batch, threads=threads,
                         device=device).to_dict()


@st.cache_data(show_spinner="Counting…", max_entries=16)
def baseline_counts(name: str, arch: str) -> dict:
    """Parameters and FLOPs per sample of the dense model."""
    from core.profile import count_flops, count_params, example_input

    model, cfg = model_and_cfg(name, arch)
    return {"params": count_params(model), "flops": int(count_flops(model, example_input(cfg, 1)).per_sample)}


@st.cache_data(show_spinner="Listing layers…", max_entries=16)
def layers(model_name: str, arch: str = "") -> pd.DataFrame:
    """The per-layer table of ``core.layers.describe_layers``."""
    from core.layers import describe_layers

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
    from core.profile import example_input, measure_layer_latency

    model, cfg = model_and_cfg(name, arch)
    timed = measure_layer_latency(model, example_input(cfg, batch), list(compressible(name, arch)["name"]),
                                  threads=threads, repeats=10)
    return {path: result.median_ms for path, result in timed.items()}


@st.cache_data(show_spinner="Hashing the weights…", max_entries=16)
def weights_digest(name: str, arch: str) -> str:
    """``core.plan.weights_hash`` of the model, recorded in exported plans."""
    from core.plan import weights_hash

    return weights_hash(model_and_cfg(name, arch)[0])


@st.cache_data(show_spinner="Scoring the model…", max_entries=64)
def accuracy(name: str, arch: str, data: str, samples: int, device: str, threads: int, plan_text: str) -> dict | None:
    """Top-1, top-5 and loss on the evaluation subset with the plan applied (``None`` without data).

    A plan of decompositions only swaps its layers in and runs only the network after the first changed
    layer, on cached activations; a plan with attention or channel-group entries is built whole.
    """
    from core.plan import loads_plan
    from core.profile.accuracy import evaluate

    ev = evaluator(name, arch, data, samples, device)
    if ev is None:
        return None
    plan = loads_plan(plan_text)
    with torch_threads(threads):
        if not plan.groups and all(is_decomposition(e.method) for e in plan.layers.values()):
            swapped = {p: replacement(name, arch, data, p, e.method, rank_key(e.rank)) for p, e in plan.layers.items()}
            result = ev.evaluate(swapped)
        else:
            result = evaluate(planned_model(name, arch, data, plan_text), eval_data(name, arch, samples, data), device=device)
    return {"accuracy": result.top1, "top5": result.top5, "loss": result.loss, "samples": result.samples}


def is_decomposition(method: str) -> bool:
    """Whether a plan entry's method is a layer decomposition (not an attention variant or a channel-group density)."""
    from core.plan_kinds import ATTENTION, GROUP_METHODS

    return method not in (ATTENTION, *GROUP_METHODS)


@st.cache_resource(show_spinner="Building the planned model…", max_entries=16)
def planned_model(name: str, arch: str, data: str, plan_text: str) -> nn.Module:
    """The model with the whole plan applied by ``core.plan.apply_plan`` (raises ``RankscopeError``)."""
    from core.plan import apply_plan, loads_plan
    from core.plan_kinds import data_needs
    from core.profile import example_input

    model, cfg = model_and_cfg(name, arch)
    plan = loads_plan(plan_text)
    calibration = labels = None
    if data_needs(plan)[0]:
        found = calibration_data(name, arch, data)
        if found is None:
            raise RankscopeError("this plan needs calibration data: choose evaluation data on the Model page")
        calibration, labels = found
    return apply_plan(model, plan, calibration=calibration, labels=labels, example=example_input(cfg, 1))[0]


@st.cache_data(show_spinner="Counting…", max_entries=64)
def planned_counts(name: str, arch: str, data: str, plan_text: str) -> dict:
    """Parameters and FLOPs per sample of :func:`planned_model`, counted on the built model."""
    from core.profile import count_flops, count_params, example_input

    model, cfg = planned_model(name, arch, data, plan_text), model_and_cfg(name, arch)[1]
    return {"params": count_params(model), "flops": int(count_flops(model, example_input(cfg, 1)).per_sample)}


@st.cache_data(show_spinner="Timing the model…", max_entries=64)
def planned_latency(name: str, arch: str, data: str, plan_text: str, batch: int, threads: int, device: str) -> float:
    """Median latency (ms) of :func:`planned_model` at ``batch`` (the dense model for an empty plan)."""
    from core.profile import example_input, measure_latency

    model, cfg = planned_model(name, arch, data, plan_text), model_and_cfg(name, arch)[1]
    return measure_latency(model, example_input(cfg, batch), threads=threads, device=device).median_ms


@st.cache_data(show_spinner="Measuring peak memory (a fresh process)…", max_entries=64)
def planned_memory(name: str, arch: str, data: str, plan_text: str, batch: int, threads: int, device: str) -> float:
    """Peak memory (MB) of one forward pass of :func:`planned_model` (``core.profile.measure_memory``)."""
    from core.profile import example_input, measure_memory

    model, cfg = planned_model(name, arch, data, plan_text), model_and_cfg(name, arch)[1]
    return measure_memory(model, example_input(cfg, batch), threads=threads, device=device).peak_mb


def memory_on_request(c: Choice, plan_texts: list[str], label: str = "Measure peak memory") -> list[float] | None:
    """Peak memory of each plan's model once the user has asked for these plans (a button; the measurement runs
    a fresh process per model, seconds each), else ``None``; asked-for plans stay measured (cached)."""
    asked = st.session_state.setdefault("memory_asked", set())
    key = (c.key, c.data, tuple(plan_texts), c.batch, c.threads, c.device)
    if st.button(label, help="runs each model once in a fresh process and reads its peak resident memory"):
        asked.add(key)
    if key not in asked:
        return None
    return [planned_memory(c.model, c.arch, c.data, text, c.batch, c.threads, c.device) for text in plan_texts]


@st.cache_data(show_spinner="Timing the layer…", max_entries=64)
def layer_latency(name: str, arch: str, data: str, path: str, method: str, rank, batch: int, threads: int) -> float:
    """Median ms of the rebuilt layer's forward on the input it gets at ``batch`` (the dense layer for method "")."""
    from core.layer_study import layer_input
    from core.profile import example_input, measure_latency

    model, cfg = model_and_cfg(name, arch)
    module = replacement(name, arch, data, path, method, rank) if method else model.get_submodule(path)
    x = layer_input(model, path, example_input(cfg, batch))
    return measure_latency(module, x, threads=threads, repeats=10).median_ms


@st.cache_data(show_spinner="Reading the spectrum…", max_entries=32)
def spectra(name: str, arch: str, data: str, path: str, method: str) -> list:
    """The layer's spectra for ``method`` (``core.layer_study.spectra``)."""
    from core.decompose import get_method
    from core.layer_study import layer_input, spectra as layer_spectra

    model, _ = model_and_cfg(name, arch)
    calibration = None
    if needs_data(method):
        calibration = layer_input(model, path, calibration_images(name, arch, data))
    return layer_spectra(get_method(method), model.get_submodule(path), calibration)


@st.cache_resource(show_spinner="Capturing the layer's inputs…", max_entries=8)
def probe_inputs(name: str, arch: str, data: str, samples: int, path: str) -> torch.Tensor:
    """What the layer receives from up to 128 evaluation images (seeded random images without data)."""
    from core.layer_study import layer_input
    from core.profile import example_input

    model, cfg = model_and_cfg(name, arch)
    ev = evaluator(name, arch, data, samples, "cpu")
    images = ev.batches[0][0][:128] if ev is not None else example_input(cfg, 16)
    return layer_input(model, path, images)


@st.cache_data(show_spinner="Building the layer at a range of ranks…", max_entries=32)
def error_curve(name: str, arch: str, data: str, samples: int, path: str, method: str) -> pd.DataFrame:
    """Output error of the layer versus rank on :func:`probe_inputs` (``core.layer_study.error_curve``)."""
    from core.decompose import get_method
    from core.layer_study import curve_points, error_curve as curve, layer_input, rank_grid

    model, _ = model_and_cfg(name, arch)
    module, m = model.get_submodule(path), get_method(method)
    calibration = layer_input(model, path, calibration_images(name, arch, data)) if m.needs_calibration else None
    return curve(module, m, probe_inputs(name, arch, data, samples, path), rank_grid(m, module, curve_points(m)),
                 calibration=calibration)


@st.cache_data(show_spinner=False, max_entries=64)
def layer_error(name: str, arch: str, data: str, samples: int, path: str, method: str, rank) -> float:
    """Output error of the layer rebuilt at ``rank`` on :func:`probe_inputs`."""
    from core.layer_study import output_error

    model, _ = model_and_cfg(name, arch)
    built = replacement(name, arch, data, path, method, rank)
    return output_error(model.get_submodule(path), built, probe_inputs(name, arch, data, samples, path))


# --- sensitivity sweeps (core.sweep), read from and written to the on-disk sweep cache ---------------
@dataclass(frozen=True)
class Grid:
    """The sweep the Sensitivity page chose; the Plan page's allocators use the same one."""

    layers: tuple[str, ...]  # () = every layer a data-free method applies to
    methods: tuple[str, ...]  # () = each layer's default method
    points: int  # ranks per layer and method

    def describe(self) -> str:
        layers = ", ".join(self.layers) if self.layers else "every compressible layer"
        methods = ", ".join(self.methods) if self.methods else "its default method"
        return f"{layers}; {methods}; {self.points} ranks each"


def grid(c: Choice) -> Grid:
    """The current :class:`Grid` from the session; layers and methods the chosen model lacks (another model's) are dropped."""
    s, layers = st.session_state, compressible(*c.key)
    s["sweep_layers"] = tuple(p for p in s["sweep_layers"] if p in set(layers["name"]))
    s["sweep_methods"] = tuple(m for m in s["sweep_methods"] if any(m in ms for ms in layers["methods"]))
    return Grid(s["sweep_layers"], s["sweep_methods"], int(s["sweep_points"]))


def run_sweep(c: Choice, g: Grid, *, latency: bool = False, progress=None, cancel=None) -> pd.DataFrame:
    """``core.sweep.sweep`` of grid ``g`` on the evaluation subset, through the sweep cache (only missing rows computed).

    ``latency`` times every point at the chosen batch and threads. Raises ``RankscopeError`` without evaluation
    data, for a bad grid, and ``Cancelled`` when ``cancel()`` says so.
    """
    from core.sweep import SweepCache, data_key, sweep

    dataset = data_name(c.model, c.arch, c.data)
    if not dataset:
        raise RankscopeError("a sweep measures accuracy: choose evaluation data on the Model page")
    cache = SweepCache(data_key(dataset, c.samples, 0), Path(st.session_state["sweep_folder"]))
    with torch_threads(c.threads):
        return sweep(model_and_cfg(*c.key)[0], eval_data(c.model, c.arch, c.samples, c.data), layers=list(g.layers) or None,
                     methods=list(g.methods) or None, points=g.points, latency=latency, latency_batch=c.batch, cache=cache,
                     progress=progress, cancel=cancel)


def swept(c: Choice, g: Grid, latency: bool = False) -> pd.DataFrame | None:
    """The sweep table of grid ``g`` when the sweep cache holds every row of it, else ``None`` (nothing is computed)."""
    from core.profile import Cancelled

    try:
        return _cached_sweep(c, g, latency, st.session_state["sweep_folder"])
    except Cancelled:
        return None


@st.cache_data(show_spinner="Reading the sweep cache…", max_entries=16)
def _cached_sweep(c: Choice, g: Grid, latency: bool, folder: str) -> pd.DataFrame:
    """A sweep asked to stop before its first row: the table when no row is missing, else ``Cancelled`` (not cached)."""
    return run_sweep(c, g, latency=latency, cancel=lambda: True)


# --- the plan being edited -------------------------------------------------------------------
def rank_key(rank):
    """A rank as a hashable cache key (lists become tuples)."""
    return tuple(rank) if isinstance(rank, list) else rank


def plan_entries(c: Choice) -> dict[str, dict]:
    """The plan under edit for the chosen model: ``{path or group: {"method", "rank", "density", "options", "variant"}}``;
    started on first use with every compressible layer at half rank."""
    from core.decompose import get_method
    from core.layer_study import default_method, rank_at

    s = st.session_state
    if s.get("plan_for") != c.key:
        model, _ = model_and_cfg(*c.key)
        entries = {}
        for path in compressible(*c.key)["name"]:
            module = model.get_submodule(path)
            method = default_method(module)
            if method is not None:
                rank = rank_at(get_method(method), module, 0.5)
                entries[path] = session_entry(LayerEntry(method, plan_rank(rank)))
        s["plan_entries"], s["plan_groups"], s["plan_for"], s["history"] = entries, {}, c.key, []
        s["plan_version"] = s.get("plan_version", 0) + 1
    return s["plan_entries"]


def plan_groups(c: Choice) -> dict[str, dict]:
    """The channel-group entries of the plan under edit (``{group: session entry}``), empty at first."""
    plan_entries(c)
    return st.session_state["plan_groups"]


def set_plan_groups(entries: dict[str, dict]) -> None:
    """Replace the channel-group entries of the plan under edit."""
    st.session_state["plan_groups"] = entries


def set_plan_entries(entries: dict[str, dict]) -> None:
    """Replace the plan under edit; widgets showing the old one are re-seeded (new keys)."""
    st.session_state["plan_entries"] = entries
    st.session_state["plan_version"] = st.session_state.get("plan_version", 0) + 1


def session_entry(entry: LayerEntry) -> dict:
    """A plan entry as the session keeps it (see :func:`plan_entries`)."""
    return {"method": entry.method, "rank": entry.rank, "density": entry.density, "options": dict(entry.options),
            "variant": entry.variant}


def set_plan(plan: Plan) -> None:
    """Make ``plan``'s entries (layers and channel groups) the plan under edit."""
    set_plan_groups({g: session_entry(e) for g, e in plan.groups.items()})
    set_plan_entries({p: session_entry(e) for p, e in plan.layers.items()})


def _entry(e: dict) -> LayerEntry:
    return LayerEntry(e["method"], e["rank"], e.get("density"), e.get("options") or {}, e.get("variant"))


def current_plan(c: Choice, *, with_hash: bool = False) -> tuple[Plan, list[str]]:
    """The plan under edit as a :class:`core.plan.Plan`, and its problems.

    Every problem (``"path: what"``, from ``core.plan``'s checks) leaves its layer out of the plan:
    a layer stays dense until its entry is fixed.
    """
    from core.plan import PlanError, plan_from_dict, validate_plan
    from core.profile import example_input

    model, cfg = model_and_cfg(*c.key)
    wanted = Plan(c.model, {p: _entry(e) for p, e in plan_entries(c).items() if e.get("method")},
                  groups={g: _entry(e) for g, e in plan_groups(c).items()})
    try:
        problems = validate_plan(plan_from_dict(wanted.to_dict()), model, example_input(cfg, 1))
    except PlanError as err:
        problems = err.problems
    bad = {p.split(":")[0] for p in problems}
    plan = Plan(c.model, {p: e for p, e in wanted.layers.items() if p not in bad},
                groups={g: e for g, e in wanted.groups.items() if g not in bad})
    if with_hash:
        plan.weights_hash = weights_digest(*c.key)
    return plan, problems


def history() -> list[dict]:
    """Configurations evaluated in this session, oldest first (see the Plan page)."""
    return st.session_state.setdefault("history", [])


# --- channel groups (core.resample, core.prune) ------------------------------------------------
@st.cache_data(show_spinner="Finding channel groups and their spectra…", max_entries=16)
def capacities(name: str, arch: str, energy: float) -> pd.DataFrame:
    """Every channel group with its capacity estimate (``core.resample.capacity``) and whether pruning can take it."""
    from core.prune import prunable_groups
    from core.profile import example_input
    from core.resample import capacity

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
    from core.profile import example_input
    from core.resample import group_spectrum as spectrum

    model, cfg = model_and_cfg(name, arch)
    return spectrum(model, example_input(cfg, 1), group)

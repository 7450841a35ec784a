"""Sensitivity sweeps (``core.sweep``) of the :class:`~dashboard.state.Grid` the Sensitivity page chose, read from
and written to the on-disk sweep cache, and the allocators that fill a plan from them."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from core.budget import CALIBRATION, compress_to_budget
from core.plan import weights_hash
from core.profile import Cancelled, example_input, task_for
from core.profile.context import torch_threads
from core.speed import LayerTimes
from core.sweep import (Allocation, Executor, Problem, RayExecutor, SweepCache, Target, allocate, data_key, layer_methods,
                        proxy_table, sweep)
from core.sweep.hybrid import hybrid_table
from core.sweep.allocate import NEEDS_TABLE, WHITENED
from dashboard.cached.models import calibration_set, data_name, eval_data, model_and_cfg

if TYPE_CHECKING:  # dashboard.state imports this package: the types only, no import cycle
    from dashboard.state import Choice, Grid


def sweep_cache(c: Choice, split: str = "test") -> SweepCache:
    """The on-disk sweep cache of the chosen evaluation subset (shared by the exact, proxy and hybrid sweeps), or of
    the calibration subset (``split="train"``, under the key ``rankscope allocate`` gives it)."""
    name = data_name(c.model, c.arch, c.data)
    return SweepCache(data_key(name if split == "test" else f"{name}-{split}", c.samples, 0),
                      Path(st.session_state["sweep_folder"]))


RUN_ON = {"local": "This process", "ray": "Ray: a local instance", "cluster": "Ray: a running cluster"}


def executor(where: str, address: str = "") -> str | Executor:
    """The executor of :data:`RUN_ON` key ``where``: ``"local"``, or a ``core.sweep.RayExecutor`` on a local Ray
    instance of this machine's cores (``"ray"``) or the cluster at ``address`` (``"cluster"``: ``auto`` or HOST:PORT).
    Raises ``RankscopeError`` when Ray is not installed or the address is malformed (before any work)."""
    if where == "local":
        return "local"
    return RayExecutor(address=(address.strip() or "auto") if where == "cluster" else None)


def run_sweep(c: Choice, g: Grid, *, latency: bool = False, progress=None, cancel=None,
              on: str | Executor = "local", split: str = "test") -> pd.DataFrame:
    """``core.sweep.sweep`` of grid ``g`` on the evaluation subset (``split="train"``: the calibration subset, for
    allocation), through the sweep cache (only missing rows computed).

    ``latency`` times every point at the chosen batch and threads. Each point is scored under the data's task
    (``core.profile.task_for``), by the executor ``on`` (:func:`executor`). Raises ``RankscopeError`` for a bad grid
    or a Ray cluster out of reach, ``Cancelled`` when ``cancel()`` says so.
    """
    data = calibration_set(c.model, c.arch, c.data, c.samples) if split == "train" else eval_data(c.model, c.arch, c.samples, c.data)
    with torch_threads(c.threads):
        return sweep(model_and_cfg(*c.key)[0], data, layers=list(g.layers) or None,
                     methods=list(g.methods) or None, points=g.points, latency=latency, latency_batch=c.batch,
                     cache=sweep_cache(c, split), progress=progress, cancel=cancel, executor=on)


def run_proxy(c: Choice, g: Grid, proxy: str, *, progress=None) -> pd.DataFrame:
    """``core.sweep.proxy_table`` of grid ``g`` by ``proxy`` on the evaluation subset, through the sweep cache (under
    the proxy's own key). Raises ``RankscopeError`` for a bad grid or a proxy the data cannot give."""
    with torch_threads(c.threads):
        return proxy_table(model_and_cfg(*c.key)[0], eval_data(c.model, c.arch, c.samples, c.data), proxy,
                           layers=list(g.layers) or None, methods=list(g.methods) or None, points=g.points,
                           cache=sweep_cache(c), progress=progress)


def run_hybrid(c: Choice, g: Grid, proxy: str, flops: float, *, progress=None, on: str | Executor = "local") -> pd.DataFrame:
    """``core.sweep.hybrid.hybrid_table`` of grid ``g`` for a plan at ``flops`` of the FLOPs: ``proxy`` over every point,
    the exact sweep (by the executor ``on``) on the points the allocation turns on (their rows join the sweep cache
    the exact sweep reads)."""
    model, cfg = model_and_cfg(*c.key)
    with torch_threads(c.threads):
        return hybrid_table(model, eval_data(c.model, c.arch, c.samples, c.data), Target("flops", flops),
                            example_input(cfg, 1), proxy=proxy, layers=list(g.layers) or None,
                            methods=list(g.methods) or None, points=g.points, cache=sweep_cache(c), progress=progress,
                            executor=on)


def exact_rows(c: Choice, table: pd.DataFrame) -> pd.DataFrame:
    """The exact sweep's rows the sweep cache holds for the points of ``table`` (any subset; none computed)."""
    model = model_and_cfg(*c.key)[0]
    task = task_for(eval_data(c.model, c.arch, c.samples, c.data))
    rows = sweep_cache(c).load(weights_hash(model), task, sorted(set(table["method"])))
    return rows.merge(table[["layer", "method", "rank"]], on=["layer", "method", "rank"])


def swept(c: Choice, g: Grid, latency: bool = False) -> pd.DataFrame | None:
    """The sweep table of grid ``g`` when the sweep cache holds every row of it, else ``None`` (nothing is computed)."""
    try:
        return _cached_sweep(c, g, latency, st.session_state["sweep_folder"])
    except Cancelled:
        return None


@st.cache_data(show_spinner="Reading the sweep cache…", max_entries=16)
def _cached_sweep(c: Choice, g: Grid, latency: bool, folder: str) -> pd.DataFrame:
    """A sweep asked to stop before its first row: the table when no row is missing, else ``Cancelled`` (not cached)."""
    return run_sweep(c, g, latency=latency, cancel=lambda: True)


def needs_sweep(allocator: str) -> bool:
    """Whether :func:`allocation` runs the sweep first: the allocators that read it."""
    return allocator in NEEDS_TABLE


def layer_times(c: Choice) -> LayerTimes:
    """Timings of the chosen model's layers at the chosen batch and threads (``core.speed.LayerTimes``, on the disk
    cache ``rankscope allocate`` shares, beside the sweep cache); one object per setting, so reruns reuse its
    captured layer inputs and the timings it has read."""
    return _layer_times(c.model, c.arch, c.batch, c.threads, str(Path(st.session_state["sweep_folder"]).parent / "latency"))


@st.cache_resource(show_spinner=False, max_entries=8)
def _layer_times(name: str, arch: str, batch: int, threads: int, folder: str) -> LayerTimes:
    model, cfg = model_and_cfg(name, arch)
    return LayerTimes(model, example_input(cfg, batch), threads=threads, folder=folder)


def allocation(c: Choice, g: Grid, allocator: str, target: Target, *, progress=None) -> Allocation:
    """``core.sweep.allocate`` of grid ``g``'s layers and methods to ``target``, on the sweep of the calibration subset
    (:func:`run_sweep`) where :func:`needs_sweep`, the layers timed (:func:`layer_times`: a latency budget is priced by
    them, and every plan reports its latency); for ``whitened``, :func:`core.budget.compress_to_budget` on the
    calibration split with its default post-training steps, as ``rankscope allocate`` calls it. Never reads the
    evaluation split. Raises ``RankscopeError`` as the sweep and allocator do."""
    model, cfg = model_and_cfg(*c.key)
    if allocator == WHITENED:  # the call rankscope allocate makes, with its defaults, on the calibration split
        with torch_threads(c.threads):
            return compress_to_budget(model, calibration_set(c.model, c.arch, c.data, CALIBRATION), target, name=c.model,
                                      example=example_input(cfg, 1), layers=list(g.layers) or None,
                                      times=layer_times(c)).allocation
    swept = run_sweep(c, g, progress=progress, split="train") if needs_sweep(allocator) else None
    layers = None if swept is not None else layer_methods(model, list(g.layers) or None, list(g.methods) or None)
    with torch_threads(c.threads):
        return allocate(allocator, Problem(model, c.model, example_input(cfg, 1), target, swept, layers,
                                           times=layer_times(c)))

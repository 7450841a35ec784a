"""The sensitivity sweep: accuracy, loss, cost and (optionally) latency of every layer at every rank, one layer at a time.

For each chosen layer and method, each candidate rank is built from the layer's one cached factorization
(the nested methods truncate by slicing it) and scored with :class:`core.evaluate.cached.LayerEvaluator`,
which runs only the network after the layer, on the activations entering it computed once for the
layer's first rank and reused for the others. Parameters and FLOPs come from ``method.cost`` at the
layer's :class:`~core.plan.cost.Site` (exactly what :func:`core.plan.cost.plan_cost` counts); the
latency, when asked for, is the median time of the built layer alone on the input it receives in the
model (:func:`core.profile.latency.capture_inputs`, :func:`core.profile.latency.time_calls`).

The table (columns in :mod:`core.sweep.table`) also holds the dense baseline: one row per layer and one
for the whole model. With a :class:`~core.sweep.cache.SweepCache` rows already on disk are read, not
recomputed, so an identical sweep is a file read and a larger one computes only the points it lacks.
Everything runs on the CPU with torch's current thread count.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import pandas as pd
import torch
from torch import nn

from core.decompose.registry import get_method
from core.errors import RankscopeError, close_matches_hint
from core.evaluate.cached import LayerEvaluator, Progress
from core.decompose.rank import parse_rank, rank_fraction, rank_grid
from core.layers.study import default_method
from core.plan import LayerEntry, weights_hash
from core.plan.cost import entry_cost, layer_sites
from core.profile import Cancelled, count_flops, count_params, task_for
from core.profile.latency import capture_inputs, time_calls
from core.sweep.cache import SweepCache
from core.sweep.table import DENSE, MODEL, Point, PointKey, columns, empty_table, key_of, score_columns
from core.task import Task

Row = dict[str, Any]
SWEEP_SAMPLES = 1000  # default evaluation subset of `rankscope sweep` and `rankscope allocate`
# A mixed sweep tries, beside a layer's default method, these data-free alternatives (all nested or
# closed-form, so a sweep stays seconds per layer; CP is left out: one ALS fit per rank takes minutes).
MIX = {"tucker2": ("tucker2", "spatial_svd", "tt", "svd")}


def layer_methods(model: nn.Module, layers: Sequence[str] | None = None,
                  methods: Sequence[str] | None = None, *, mix: bool = False) -> dict[str, list[str]]:
    """Each layer to sweep, in forward (``named_modules``) order, with the data-free methods to sweep it with.

    Parameters
    ----------
    layers : module paths; default every layer some data-free method applies to.
    methods : method names, each used on the layers it applies to; default :func:`core.layers.study.default_method`,
        followed by its :data:`MIX` alternatives that apply when ``mix``.

    Raises
    ------
    RankscopeError
        An unknown layer or method, a data-aware method, a named layer no given method applies to, nothing to sweep.
    """
    modules = dict(model.named_modules())
    for name in layers or []:
        if name not in modules or not name:
            raise RankscopeError(f"no layer named {name!r} in the model{close_matches_hint(name, list(modules))}")
    for name in methods or []:
        if get_method(name).needs_calibration:
            raise RankscopeError(f"{name} is data-aware; a sweep uses data-free methods only")
    chosen: dict[str, list[str]] = {}
    for path, module in modules.items():
        if not path or (layers and path not in layers):
            continue
        if methods:
            usable = [m for m in methods if get_method(m).check(module) is None]
        else:
            first = default_method(module)
            usable = [m for m in (MIX.get(first, (first,)) if mix else (first,)) if m and get_method(m).check(module) is None]
        if usable:
            chosen[path] = usable
        elif layers:
            raise RankscopeError(f"{path}: no {'given ' if methods else ''}data-free method applies to it")
    if not chosen:
        raise RankscopeError("nothing to sweep: no layer of the model takes the given methods")
    return chosen


def sweep_grid(model: nn.Module, layers: Sequence[str] | None = None, methods: Sequence[str] | None = None,
               points: int = 10, *, mix: bool = False, multiple: int = 1) -> list[Point]:
    """The (layer, method, rank) points of a sweep: :func:`core.decompose.rank.rank_grid` of ``points`` ranks each,
    rounded to ``multiple`` (:func:`core.decompose.rank.round_rank`)."""
    if points < 1:
        raise RankscopeError(f"points must be at least 1, got {points}")
    return [Point(path, name, rank)
            for path, names in layer_methods(model, layers, methods, mix=mix).items()
            for name in names
            for rank in rank_grid(get_method(name), model.get_submodule(path), points, multiple)]


class _Measurer:
    """Computes table rows for one model and dataset; the evaluator, sites and captured inputs are made on first use."""

    def __init__(self, model: nn.Module, dataset: Any, task: Task, layers: list[str], batch_size: int, latency_batch: int,
                 latency_repeats: int) -> None:
        self.model, self.dataset, self.task, self.layers = model.eval(), dataset, task, layers
        self.batch_size, self.latency_batch, self.latency_repeats = batch_size, latency_batch, latency_repeats
        self._evaluator: LayerEvaluator | None = None
        self._inputs: dict[str, tuple] | None = None
        self.sites = layer_sites(model, self.example(1), layers)

    def example(self, batch: int) -> torch.Tensor:
        """The first ``batch`` evaluation images (repeated when the subset is smaller)."""
        images = torch.stack([self.dataset[i][0] for i in range(min(batch, len(self.dataset)))])
        copies = (batch + len(images) - 1) // len(images)
        return images.repeat(copies, *[1] * (images.dim() - 1))[:batch]

    @property
    def evaluator(self) -> LayerEvaluator:
        """The evaluator over the dataset, made on first use (a sweep served by the cache never loads the batches)."""
        if self._evaluator is None:
            self._evaluator = LayerEvaluator(self.model, self.dataset, task=self.task, batch_size=self.batch_size)
        return self._evaluator

    def latency(self, module: nn.Module, layer: str) -> Row:
        """Median ms of ``module`` alone on the input ``layer`` receives (the whole model on the example for MODEL)."""
        with torch.inference_mode():
            if layer == MODEL:
                call = partial(module, self.example(self.latency_batch))
            else:
                if self._inputs is None:
                    self._inputs = capture_inputs(self.model, self.example(self.latency_batch), self.layers)
                args, kwargs = self._inputs[layer]
                call = partial(module.eval(), *args, **kwargs)
            samples = time_calls(call, warmup=3, repeats=self.latency_repeats, device=torch.device("cpu"))
        return {"latency_ms": float(pd.Series(samples).median()), "latency_batch": self.latency_batch,
                "latency_threads": torch.get_num_threads()}

    def row(self, key: PointKey, known: Row | None, base: Row | None, latency: bool, cancel: Callable[[], bool] | None) -> Row:
        """The row of ``key``: ``known``'s accuracy and costs when it has them, latency measured when asked for."""
        module = self.model if key.layer == MODEL else self.model.get_submodule(key.layer)
        built = module
        if key.method != DENSE:
            method = get_method(key.method)
            built = method.build(module, parse_rank(key.rank, method.rank_arity))
        row = dict(known) if known is not None else self._scored(key, module, built, base, cancel)
        if latency:
            row.update(self.latency(built, key.layer))
        return row

    def _scored(self, key: PointKey, module: nn.Module, built: nn.Module, base: Row | None,
                cancel: Callable[[], bool] | None) -> Row:
        row: Row = {"layer": key.layer, "method": key.method, "rank": key.rank, "fraction": 1.0,
                    "latency_ms": float("nan"), "latency_batch": 0, "latency_threads": 0}
        if key.layer == MODEL:
            result = self.evaluator.evaluate(cancel=cancel)
            row |= {"params": count_params(module), "flops": int(count_flops(module, self.example(1)).per_sample)}
            return row | score_columns(result)
        if key.method == DENSE:
            cost = entry_cost(module, None, self.sites[key.layer])
            return row | {"params": cost.params, "flops": cost.flops} | {k: v for k, v in base.items() if k not in row and k not in ("params", "flops")}
        method = get_method(key.method)
        rank = parse_rank(key.rank, method.rank_arity)
        cost = entry_cost(module, LayerEntry(key.method, rank), self.sites[key.layer])
        row["fraction"] = rank_fraction(method, module, rank)
        result = self.evaluator.evaluate({key.layer: built}, cancel=cancel)
        return row | {"params": cost.params, "flops": cost.flops} | score_columns(result)


def _needs_work(row: Row | None, latency: bool, batch: int) -> bool:
    """Whether ``row`` is missing, or lacks a latency timed at ``batch`` with the current threads when one is asked for."""
    if row is None:
        return True
    timed = row["latency_batch"] == batch and row["latency_threads"] == torch.get_num_threads()
    return latency and not (timed and row["latency_ms"] == row["latency_ms"])  # NaN != NaN: not measured


def sweep(
    model: nn.Module,
    dataset: Any,
    *,
    layers: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    points: int = 10,
    mix: bool = False,
    multiple: int = 1,
    task: str | Task | None = None,
    batch_size: int = 256,
    latency: bool = False,
    latency_batch: int = 1,
    latency_repeats: int = 20,
    cache: SweepCache | None = None,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> pd.DataFrame:
    """Sensitivity table of ``model`` on ``dataset``: every point of :func:`sweep_grid`, one layer changed at a time.

    Parameters
    ----------
    model : a classifier (only read).
    dataset : ``(input, label)`` items, e.g. :func:`core.data.eval_subset` of a test split (label ``-1`` where none).
    layers, methods, points, mix, multiple : the grid, see :func:`sweep_grid` and :func:`layer_methods`.
    task : how each point is scored (default :func:`core.profile.task_for` the data: classification with labels,
        fidelity to the unmodified model without).
    batch_size : evaluation batch size.
    latency : also time each layer at each rank (and the dense layers and model) on a batch of ``latency_batch``,
        median of ``latency_repeats`` calls after 3 warm-up calls.
    cache : read rows from and write rows to this cache (keyed by the model's weights hash, ``cache.data``, task and method).
    progress : called with ``(rows done, rows to compute)`` after each computed row.
    cancel : called before each row and each evaluation batch; ``True`` stops the sweep.

    Returns
    -------
    pandas.DataFrame
        The model row, one dense row per layer, then the points in grid order; columns in :mod:`core.sweep.table`.

    Raises
    ------
    Cancelled
        ``cancel()`` returned ``True``; the rows computed so far are in the cache.
    RankscopeError
        A bad grid (see :func:`layer_methods`).
    """
    grid = sweep_grid(model, layers, methods, points, mix=mix, multiple=multiple)
    chosen = list(dict.fromkeys(p.layer for p in grid))
    keys = [PointKey(MODEL, DENSE, "")] + [PointKey(path, DENSE, "") for path in chosen] + [p.key for p in grid]
    task = task_for(dataset, task)
    table_columns = columns(task)
    weights = weights_hash(model) if cache is not None else ""
    cached = (cache.load(weights, task, sorted({p.method for p in grid}) + [DENSE]) if cache is not None
              else empty_table(task))
    rows: dict[PointKey, Row] = {key_of(r): r for r in cached.to_dict("records")}
    todo = [key for key in keys if _needs_work(rows.get(key), latency, latency_batch)]
    if todo:
        measurer = _Measurer(model, dataset, task, chosen, batch_size, latency_batch, latency_repeats)
        try:
            for done, key in enumerate(todo):
                if cancel is not None and cancel():
                    raise Cancelled(f"sweep cancelled after {done} of {len(todo)} rows")
                rows[key] = measurer.row(key, rows.get(key), rows.get(keys[0]), latency, cancel)
                if progress is not None:
                    progress(done + 1, len(todo))
                if cache is not None and done + 1 < len(todo) and todo[done + 1].layer != key.layer:
                    cache.save(weights, pd.DataFrame(rows.values(), columns=table_columns))
        finally:
            if cache is not None:
                cache.save(weights, pd.DataFrame(rows.values(), columns=table_columns))
    return pd.DataFrame([rows[key] for key in keys], columns=table_columns)

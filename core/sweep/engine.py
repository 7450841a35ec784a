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

The missing rows are computed in :class:`Group` s (the model and dense rows, then each layer's points) by an
:class:`Executor`: :class:`InProcess` by default, or :class:`~core.sweep.distributed.RayExecutor` on a Ray
cluster; each group's rows are merged into the table and the cache as they arrive. Everything runs on the CPU
with torch's current thread count (a Ray worker sets the same).
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

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
from core.sweep.distributed import RayExecutor
from core.sweep.interval import EarlyStop, check_proportion
from core.sweep.table import DENSE, MODEL, Point, PointKey, columns, empty_table, key_of, score_columns
from core.task import Scores, Task

Row = dict[str, Any]
STOPPED = "stopped"  # a computed row's flag (not a table column): scored on fewer batches by an early stop
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
                 latency_repeats: int, early_stop: EarlyStop | None = None) -> None:
        self.model, self.dataset, self.task, self.layers = model.eval(), dataset, task, layers
        self.batch_size, self.latency_batch, self.latency_repeats = batch_size, latency_batch, latency_repeats
        self.early_stop = early_stop
        self._evaluator: LayerEvaluator | None = None
        self._inputs: dict[str, tuple] | None = None
        self._dense: Scores | None = None
        self._dense_so_far: dict[int, float] = {}  # samples seen -> the dense model's headline on them
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

    def dense(self, cancel: Callable[[], bool] | None = None) -> Scores:
        """The unmodified model's scores, computed once (with its headline after each batch, for :meth:`stop`)."""
        if self._dense is None:
            self._dense = self.evaluator.evaluate(cancel=cancel, stop=self._record)
        return self._dense

    def _record(self, so_far: Scores) -> bool:
        self._dense_so_far[so_far.samples] = so_far.score
        return False

    def stop(self) -> Callable[[Scores], bool] | None:
        """The evaluator's ``stop`` of a point under :attr:`early_stop` (``None`` without one)."""
        if self.early_stop is None:
            return None
        self.dense()
        checks, early = len(self.evaluator.batches) - 1, self.early_stop
        return lambda so_far: early.decided(so_far, self._dense_so_far[so_far.samples], checks)

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

    def row(self, key: PointKey, known: Row | None, base: Row | None, latency: bool, cancel: Callable[[], bool] | None,
            built: nn.Module | None = None) -> Row:
        """The row of ``key``: ``known``'s accuracy and costs when it has them, latency measured when asked for;
        ``built``: the point's layer when the caller has built it already."""
        module = self.model if key.layer == MODEL else self.model.get_submodule(key.layer)
        if built is None:
            built = self.build(key, module) if key.method != DENSE and (known is None or latency) else module
        row = dict(known) if known is not None else self._scored(key, module, built, base, cancel)
        if latency:
            row.update(self.latency(built, key.layer))
        return row

    @staticmethod
    def build(key: PointKey, module: nn.Module) -> nn.Module:
        """Point ``key``'s method built on ``module`` at its rank."""
        method = get_method(key.method)
        return method.build(module, parse_rank(key.rank, method.rank_arity))

    def layer_rows(self, layer: str, keys: Sequence[PointKey], known: Mapping[PointKey, Row], base: Row | None,
                   latency: bool, cancel: Callable[[], bool] | None = None, stack: int = 1) -> list[Row]:
        """The rows of one :class:`Group`, in the order of ``keys``: the one place a group is scored.

        Parameters
        ----------
        layer : the group's layer (:data:`~core.sweep.table.MODEL` for the group of the model and dense rows).
        keys : the rows to compute: points of ``layer``, or (the baseline group) the model row first, then dense rows.
        known : cached rows among ``keys`` whose scores are kept (only their latency is measured).
        base : the model row, whose scores the dense rows copy (the one computed here when ``keys`` holds it).
        latency, cancel, stack : see :func:`sweep`.
        """
        scored, built = {}, {}
        fresh = [k for k in keys if k not in known and k.method != DENSE]
        if stack > 1 and len(fresh) > 1:  # all the layer's new points through the suffix, ``stack`` at a time
            module = self.model.get_submodule(layer)
            built = {k: self.build(k, module) for k in fresh}
            results = self.evaluator.evaluate_variants(layer, list(built.values()), stack=stack, cancel=cancel)
            scored = {k: self._point_row(k, module, result) for k, result in zip(fresh, results)}
        rows: list[Row] = []
        for key in keys:
            row = self.row(key, known.get(key, scored.get(key)), base, latency, cancel, built.get(key))
            if key.layer == MODEL:
                base = row
            rows.append(row)
        return rows

    def _scored(self, key: PointKey, module: nn.Module, built: nn.Module, base: Row | None,
                cancel: Callable[[], bool] | None) -> Row:
        row: Row = {"layer": key.layer, "method": key.method, "rank": key.rank, "fraction": 1.0,
                    "latency_ms": float("nan"), "latency_batch": 0, "latency_threads": 0}
        if key.layer == MODEL:
            result = self.dense(cancel)
            row |= {"params": count_params(module), "flops": int(count_flops(module, self.example(1)).per_sample)}
            return row | score_columns(result)
        if key.method == DENSE:
            cost = entry_cost(module, None, self.sites[key.layer])
            return row | {"params": cost.params, "flops": cost.flops} | {k: v for k, v in base.items() if k not in row and k not in ("params", "flops")}
        return self._point_row(key, module, self.evaluator.evaluate({key.layer: built}, cancel=cancel, stop=self.stop()))

    def _point_row(self, key: PointKey, module: nn.Module, result: Scores) -> Row:
        """The row of point ``key`` of layer ``module`` scored ``result``: its scores and its costs at the layer's site."""
        method = get_method(key.method)
        rank = parse_rank(key.rank, method.rank_arity)
        cost = entry_cost(module, LayerEntry(key.method, rank), self.sites[key.layer])
        return {"layer": key.layer, "method": key.method, "rank": key.rank, "fraction": rank_fraction(method, module, rank),
                "latency_ms": float("nan"), "latency_batch": 0, "latency_threads": 0,
                "params": cost.params, "flops": cost.flops,
                STOPPED: self.early_stop is not None and result.samples < self.dense().samples} | score_columns(result)


@dataclass(frozen=True)
class Group:
    """Rows scored together: the model and dense rows (``layer`` :data:`~core.sweep.table.MODEL`), or the missing
    points of one layer, so that the activations entering it are computed once for all of them.

    ``known``: cached rows among ``keys`` that only lack a latency; ``base``: the cached model row (``None`` when
    the group computes it, or holds no dense row).
    """

    layer: str
    keys: tuple[PointKey, ...]
    known: dict[PointKey, Row] = field(default_factory=dict)
    base: Row | None = None


@dataclass(frozen=True)
class SweepJob:
    """What every group of one sweep shares besides the model and data: how rows are measured.

    ``threads`` is the driver's torch thread count; a worker scores with exactly as many, so that its rows are
    bit for bit the in-process ones (a reduction split over another number of threads may round differently).
    """

    task: Task
    layers: tuple[str, ...]
    batch_size: int
    latency: bool
    latency_batch: int
    latency_repeats: int
    threads: int
    stack: int = 1
    early_stop: EarlyStop | None = None

    def measurer(self, model: nn.Module, dataset: Any) -> _Measurer:
        """A measurer of ``model`` on ``dataset`` with this job's settings."""
        return _Measurer(model, dataset, self.task, list(self.layers), self.batch_size, self.latency_batch,
                         self.latency_repeats, self.early_stop)

    def score(self, measurer: _Measurer, group: Group, cancel: Callable[[], bool] | None = None) -> list[Row]:
        """``group``'s rows (:meth:`_Measurer.layer_rows`)."""
        return measurer.layer_rows(group.layer, group.keys, group.known, group.base, self.latency, cancel, self.stack)


OnRows = Callable[[list[Row]], None]  # called with each group's rows as they arrive


class Executor(Protocol):
    """Computes the groups of a sweep and hands each one's rows to ``on_rows`` as it is done (in any order)."""

    def run(self, job: SweepJob, model: nn.Module, dataset: Any, groups: Sequence[Group], on_rows: OnRows,
            cancel: Callable[[], bool] | None = None) -> None:
        """Compute every group of ``groups``; raise :class:`~core.profile.Cancelled` when ``cancel()`` is true."""
        ...


class InProcess:
    """The default executor: the groups one after another in this process, with one measurer for all."""

    def run(self, job: SweepJob, model: nn.Module, dataset: Any, groups: Sequence[Group], on_rows: OnRows,
            cancel: Callable[[], bool] | None = None) -> None:
        """See :class:`Executor`; ``cancel`` is also called before each evaluation batch."""
        measurer = job.measurer(model, dataset)
        for group in groups:
            if cancel is not None and cancel():
                raise Cancelled("sweep cancelled")
            on_rows(job.score(measurer, group, cancel))


EXECUTORS: dict[str, Callable[[], Executor]] = {"local": InProcess, "ray": RayExecutor}


def executor_named(executor: str | Executor) -> Executor:
    """``executor`` itself, or a new one of :data:`EXECUTORS` by name (``"ray"``: a local Ray instance)."""
    if not isinstance(executor, str):
        return executor
    if executor not in EXECUTORS:
        raise RankscopeError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")
    return EXECUTORS[executor]()


def sweep_groups(keys: Sequence[PointKey], rows: Mapping[PointKey, Row]) -> list[Group]:
    """``keys`` (model row, dense rows, then the points layer by layer) in :class:`Group` s: the baseline rows
    first, then each layer's points; ``rows`` holds the cached rows (those of ``keys`` only lack a latency)."""
    grouped: dict[str, list[PointKey]] = {}
    for key in keys:
        grouped.setdefault(MODEL if key.method == DENSE else key.layer, []).append(key)
    base = rows.get(PointKey(MODEL, DENSE, ""))
    return [Group(layer, tuple(ks), {k: rows[k] for k in ks if k in rows}, base if layer == MODEL else None)
            for layer, ks in grouped.items()]


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
    executor: str | Executor = "local",
    select: Collection[PointKey] | None = None,
    stack: int = 1,
    early_stop: EarlyStop | None = None,
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
    progress : called with ``(rows done, rows to compute)`` for each computed row, as its layer's rows arrive.
    cancel : called before each layer's rows (and, in process, each evaluation batch); ``True`` stops the sweep.
    select : only the grid's points among these keys (and the dense rows of their layers); ``None``: all of them.
    stack : ranks of one layer scored in one pass of the network after it
        (:meth:`core.evaluate.cached.LayerEvaluator.evaluate_variants`); the numbers are the same as one at a time
        (tested bit for bit), the speed is not: on this project's CPU, at batch 256, stacking is slower (larger
        batches fall out of cache), so 1 is the default.
    early_stop : stop scoring a point after the batch that puts its headline, at the stop's confidence, more than
        its ``drop`` below the dense model's (:class:`~core.sweep.interval.EarlyStop`): its row's ``samples`` say how
        many it was scored on. Such rows are not written to the cache (every cached row is scored on all the data);
        the others are those of the sweep without it, bit for bit. Proportion headlines only (top-1, agreement).
    executor : where the missing rows are computed, one :class:`Group` at a time: ``"local"`` (:class:`InProcess`,
        this process), ``"ray"`` (:class:`~core.sweep.distributed.RayExecutor` on a local Ray instance), or an
        :class:`Executor` such as ``RayExecutor(address="auto")``. The table is the same whichever computes it.

    Returns
    -------
    pandas.DataFrame
        The model row, one dense row per layer, then the points in grid order; columns in :mod:`core.sweep.table`.

    Raises
    ------
    Cancelled
        ``cancel()`` returned ``True``; the layers whose rows were all computed are in the cache.
    RankscopeError
        A bad grid (see :func:`layer_methods`), an unknown executor, a Ray cluster out of reach.
    """
    grid = sweep_grid(model, layers, methods, points, mix=mix, multiple=multiple)
    if select is not None:
        grid = [p for p in grid if p.key in select]
        if not grid:
            raise RankscopeError("none of the selected points is in the sweep's grid")
    chosen = list(dict.fromkeys(p.layer for p in grid))
    keys = [PointKey(MODEL, DENSE, "")] + [PointKey(path, DENSE, "") for path in chosen] + [p.key for p in grid]
    task = task_for(dataset, task)
    if early_stop is not None:
        check_proportion(task)
        if stack > 1:
            raise RankscopeError("early stop scores a layer's points one at a time: leave out stack")
    table_columns = columns(task)
    weights = weights_hash(model) if cache is not None else ""
    cached = (cache.load(weights, task, sorted({p.method for p in grid}) + [DENSE]) if cache is not None
              else empty_table(task))
    rows: dict[PointKey, Row] = {key_of(r): r for r in cached.to_dict("records")}
    todo = [key for key in keys if _needs_work(rows.get(key), latency, latency_batch)]
    if todo:
        job = SweepJob(task, tuple(chosen), batch_size, latency, latency_batch, latency_repeats, torch.get_num_threads(),
                       stack, early_stop)
        done = 0

        def arrived(computed: list[Row]) -> None:
            nonlocal done
            for row in computed:
                rows[key_of(row)] = row
                done += 1
                if progress is not None:
                    progress(done, len(todo))
            if cache is not None:
                cache.save(weights, pd.DataFrame([r for r in computed if not r.get(STOPPED)], columns=table_columns))

        try:
            executor_named(executor).run(job, model, dataset, sweep_groups(todo, rows), arrived, cancel)
        except Cancelled:
            raise Cancelled(f"sweep cancelled after {done} of {len(todo)} rows") from None
    return pd.DataFrame([rows[key] for key in keys], columns=table_columns)

"""The hybrid sweep: a proxy over every point, the exact sweep only on the points an allocation at the budget turns on.

A proxy (:mod:`core.sweep.proxies`) scores every (layer, method, rank) point from one pass, but its scale across
layers is only as good as its agreement with the exact sweep (:mod:`core.sweep.agreement`). Within a layer it
orders the ranks well; what it gets wrong is mostly where, between one layer and another, the budget is best
spent. So:

1. the proxy table of the whole grid is allocated at the target (:func:`core.sweep.allocate.allocate`, the
   ``rankscope`` knapsack by default, without refinement);
2. each layer's ``window`` grid points nearest in cost to the rank it was given (the costliest ones when it was
   kept dense) are scored exactly (:func:`core.sweep.sweep` with ``select``: only those points are evaluated,
   through the same cache as a full exact sweep);
3. the table is made again (:func:`calibrated`): exact rows where they exist, and elsewhere the proxy's scores put
   on the exact scale of their layer (a per-layer slope fitted on its exact points), so the allocator still sees
   every option; it allocates again, and where the plan moved to points only the proxy scored, those are scored
   exactly and step 3 repeats, at most ``rounds`` times.

The table returned has the grid's rows (the exact sweep's columns); ``attrs`` say which points were scored exactly
(``exact``, their ``(layer, method, rank)``; ``exact_points`` of ``grid_points``), by which proxy, after how many
``rounds``. At the target the allocation from it is, once the rounds settle, decided on exact points.
"""
from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from core.decompose.rank import rank_text
from core.errors import RankscopeError
from core.evaluate.cached import Progress
from core.sweep.allocate import allocate
from core.sweep.budget import Allocation, Problem, Target
from core.sweep.cache import SweepCache
from core.sweep.engine import Executor, sweep
from core.sweep.proxies import proxy_table
from core.sweep.table import DENSE, PointKey, key_of
from core.profile import task_for
from core.task import Task

HYBRID_ALLOCATOR = "rankscope"  # the allocators that read the table's losses point by point
WINDOW = 2  # exact points per layer around the proxy's choice
ROUNDS = 3  # re-allocations that may add exact points


def _layer_points(table: pd.DataFrame) -> dict[str, list[PointKey]]:
    """Per layer, its grid points ordered by cost (FLOPs, then parameters)."""
    points = table[table["method"] != DENSE].sort_values(["flops", "params"], kind="stable")
    return {layer: [key_of(r) for r in rows.to_dict("records")] for layer, rows in points.groupby("layer", sort=False)}


def _window(points: list[PointKey], chosen: PointKey | None, size: int) -> tuple[int, int]:
    """``[lo, hi)`` of the ``size`` points of ``points`` (by cost) centred on ``chosen`` (the costliest end when dense)."""
    centre = points.index(chosen) if chosen in points else len(points) - 1
    lo = max(0, min(centre - (size - 1) // 2, len(points) - size))
    return lo, min(len(points), lo + size)


def _chosen(allocation: Allocation) -> dict[str, PointKey]:
    """Layer -> the point the allocation gave it (layers kept dense are absent)."""
    return {layer: PointKey(layer, entry.method, rank_text(entry.rank)) for layer, entry in allocation.plan.layers.items()}


def hybrid_table(
    model: nn.Module,
    dataset: Any,
    target: Target,
    example: Any,
    *,
    proxy: str = "fisher",
    allocator: str = HYBRID_ALLOCATOR,
    window: int = WINDOW,
    rounds: int = ROUNDS,
    layers: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    points: int = 10,
    mix: bool = False,
    multiple: int = 1,
    task: str | Task | None = None,
    batch_size: int = 256,
    cache: SweepCache | None = None,
    predicted: pd.DataFrame | None = None,
    progress: Progress | None = None,
    executor: str | Executor = "local",
) -> pd.DataFrame:
    """The exact sensitivity rows that decide an allocation of ``model`` at ``target``, found through ``proxy``.

    Parameters
    ----------
    model : the model (only read).
    dataset : the data the exact points are scored on, as for :func:`core.sweep.sweep`.
    target : the budget the allocation is made for (``params`` or ``flops``).
    example : one input sample ``(1, ...)`` placing the layers (:class:`core.sweep.budget.Problem`).
    proxy : a name of :data:`core.sweep.proxies.PROXIES`.
    allocator : a table allocator of :data:`core.sweep.allocate.ALLOCATORS` (``rankscope`` or ``greedy``).
    window : exact points per layer to start with (at least 1).
    rounds : how many re-allocations may add exact points.
    layers, methods, points, mix, multiple, task, batch_size : the grid and scoring, as :func:`core.sweep.sweep`.
    cache : the exact rows' cache (shared with full exact sweeps of the same data); the proxy's rows are cached
        beside them under the proxy's key.
    predicted : the proxy's table of the same grid when the caller has it (made on other data, say); ``proxy`` is
        then not run.
    progress : called with ``(rows done, rows to compute)`` by each round's exact sweep.
    executor : where the exact points are computed, as for :func:`core.sweep.sweep` (``"local"``, ``"ray"`` or an
        :class:`~core.sweep.engine.Executor`).

    Returns
    -------
    pandas.DataFrame
        The exact sweep's columns, the proxy grid's rows (see :func:`calibrated`); ``attrs``: ``proxy``, ``exact``,
        ``exact_points``, ``grid_points``, ``rounds``.

    Raises
    ------
    RankscopeError
        A latency target, an allocator that reads no table, a window below 1, a bad grid or proxy.
    """
    if target.kind == "latency":
        raise RankscopeError("the hybrid sweep allocates params or FLOPs targets; a latency target needs timed layers")
    if allocator not in ("rankscope", "greedy"):
        raise RankscopeError(f"the hybrid sweep re-allocates on its table: {allocator!r} reads none (use rankscope or greedy)")
    if window < 1:
        raise RankscopeError(f"window must be at least 1, got {window}")
    grid = dict(layers=layers, methods=methods, points=points, mix=mix, multiple=multiple)
    if predicted is None:
        predicted = proxy_table(model, dataset, proxy, task=task, batch_size=batch_size,
                                cache=cache, **grid)
    task = task_for(dataset, task)
    ordered = _layer_points(predicted)
    first = allocate(allocator, Problem(model, "", example, target, predicted))
    bounds = {layer: _window(keys, _chosen(first).get(layer), window) for layer, keys in ordered.items()}
    select = {key for layer, (lo, hi) in bounds.items() for key in ordered[layer][lo:hi]}
    done = 0
    with tempfile.TemporaryDirectory(prefix="rankscope-hybrid-") as folder:
        rows = cache if cache is not None else SweepCache("hybrid", Path(folder))  # each round computes only new points
        while True:
            exact = sweep(model, dataset, select=select, task=task, batch_size=batch_size, cache=rows, progress=progress,
                          executor=executor, **grid)
            table = calibrated(predicted, exact, task)
            missing = set(_chosen(allocate(allocator, Problem(model, "", example, target, table))).values()) - select
            if not missing or done == rounds:
                break
            select |= missing  # the plan moved to points only the proxy scored: score them exactly and decide again
            done += 1
    table.attrs.update(proxy=str(predicted.attrs.get("proxy", proxy)), exact_points=len(select),
                       grid_points=sum(len(k) for k in ordered.values()), rounds=done,
                       exact=sorted(tuple(k) for k in select))
    return table


def calibrated(predicted: pd.DataFrame, exact: pd.DataFrame, task: Task) -> pd.DataFrame:
    """``predicted``'s grid with ``exact``'s rows where it has them and, elsewhere, the proxy's scores put on the exact
    scale of their layer: ``loss`` increase ``a * score`` and headline drop ``b * score``, ``a`` and ``b`` the
    least-squares slopes through 0 of the layer's exact increases and drops on its proxy scores (at least 0; a layer
    without exact points takes the median slope of the others). The task's other metrics are NaN there."""
    headline = task.headline
    sign = 1.0 if next(m.higher_is_better for m in task.metrics if m.name == headline) else -1.0
    base = predicted[predicted["method"] == DENSE].iloc[0]
    dense = exact[(exact["layer"] == "") & (exact["method"] == DENSE)].iloc[0]
    out = predicted.copy()
    score = out["loss"] - base["loss"]
    found = out.merge(exact, on=["layer", "method", "rank"], how="left", suffixes=("", "_exact"), indicator=True)
    known = (found["_merge"] == "both").to_numpy() & (out["method"] != DENSE).to_numpy()
    rise = found["loss_exact"] - dense["loss"]
    drop = sign * (dense[headline] - found[f"{headline}_exact"])
    slopes: dict[str, tuple[float, float]] = {}
    for layer in dict.fromkeys(out.loc[known, "layer"]):
        mine = known & (out["layer"] == layer).to_numpy()
        energy = float((score[mine] ** 2).sum())
        if energy > 0:
            slopes[layer] = (max(0.0, float((score[mine] * rise[mine]).sum()) / energy),
                             max(0.0, float((score[mine] * drop[mine]).sum()) / energy))
    fallback = tuple(float(pd.Series([v[i] for v in slopes.values()]).median()) if slopes else 1.0 for i in (0, 1))
    for i, row in out.iterrows():
        if row["method"] == DENSE or known[out.index.get_loc(i)]:
            continue
        a, b = slopes.get(row["layer"], fallback)
        out.loc[i, [m.name for m in task.metrics]] = float("nan")
        out.loc[i, "loss"] = dense["loss"] + a * score[i]
        out.loc[i, headline] = dense[headline] - sign * b * score[i]
    columns = [c for c in exact.columns if c not in ("layer", "method", "rank")]
    exact_rows = exact.set_index(["layer", "method", "rank"])
    for i in out.index[known | (out["method"] == DENSE).to_numpy()]:
        key = (out.at[i, "layer"], out.at[i, "method"], out.at[i, "rank"])
        if key in exact_rows.index:
            out.loc[i, columns] = exact_rows.loc[key, columns].to_numpy()
    out.attrs = {}
    return out

"""The reference sweep, done the way AIMET and Distiller do it: every point from scratch.

For each point the factorization cache is emptied, a one-layer plan is applied with
:func:`core.plan.apply_plan` (a copy of the whole model) and the copy is scored with
:func:`core.profile.evaluate` over the whole dataset. It exists to check :func:`core.sweep.sweep`
against and to time it (``rankscope bench sweep``); it gives the same numbers, slower.

References
----------
Qualcomm AIMET, ``aimet_torch`` compression: layer-wise eval scores via the user's evaluation callback
on a compressed copy of the model (``CompRatioSelectAlgo``). Intel Distiller, ``sensitivity.py``
(``perform_sensitivity_analysis``): a deep copy of the model per layer and ratio, then ``test_func``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from torch import nn

from core.decompose import CACHE
from core.decompose.rank import rank_text
from core.plan import LayerEntry, Plan, apply_plan
from core.profile import evaluate, task_for
from core.sweep.table import LEAD, Point, columns, score_columns
from core.task import Task


def naive_sweep(model: nn.Module, dataset: Any, points: Sequence[Point], *, task: str | Task | None = None,
                batch_size: int = 256) -> pd.DataFrame:
    """The task's scores of ``model`` with each point's layer replaced, each computed from scratch.

    Returns one row per point with the columns ``layer, method, rank`` (as text), then the task, metric, ``loss``
    and ``samples`` columns of :mod:`core.sweep.table`.
    """
    task = task_for(dataset, task)
    rows = []
    for point in points:
        CACHE.clear()
        plan = Plan("naive-sweep", {point.layer: LayerEntry(point.method, point.rank)})
        compressed, _ = apply_plan(model, plan)
        result = evaluate(compressed, dataset, task=task, reference=model, batch_size=batch_size)
        rows.append({"layer": point.layer, "method": point.method, "rank": rank_text(point.rank)} | score_columns(result))
    return pd.DataFrame(rows, columns=["layer", "method", "rank"] + columns(task)[len(LEAD) - 1:])

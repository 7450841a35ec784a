"""The sensitivity table: one row per (layer, method, rank) point, plus the dense baseline, and its CSV form.

Columns
-------
layer : module path; ``""`` (:data:`MODEL`) for the row of the whole, unmodified model.
method : decomposition method, or ``"dense"`` (:data:`DENSE`) for the unmodified layer or model.
rank : the rank as text, one entry per mode joined by ``x`` (``"8"``, ``"4x8"``); ``""`` for dense rows.
fraction : the largest rank entry over that mode's full rank (1.0 for dense rows).
params : parameters of the layer as built (of the whole model on the model row).
flops : FLOPs of the layer for one sample where it sits in the model (``method.cost`` at its
    :class:`~core.plan.cost.Site`; 1 multiply-add = 2 FLOPs); the whole model's on the model row.
latency_ms : median milliseconds of the layer alone on the input it receives in the model (the whole
    model on the model row), on a batch of ``latency_batch`` with ``latency_threads`` threads; NaN when not measured.
latency_batch, latency_threads : the setting of that timing (0 when not measured).
task : the task the scores are of (:mod:`core.task`), the same on every row.
<the task's metrics> : of the model with only this layer changed (the unmodified model's on dense rows), one
    column per metric of the task: ``top1, top5, loss`` for classification (``top5`` NaN for 5 classes or
    fewer), ``agreement, top5_overlap, kl, relative_error`` for fidelity.
loss : the task's loss (for classification the ``loss`` metric itself, for fidelity the KL): what
    allocators minimise.
samples : evaluation examples behind the scores.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pandas as pd

from core.decompose.rank import Rank, rank_text
from core.io import atomic_write_text
from core.task import Scores, Task, get_task

MODEL = ""  # ``layer`` of the whole-model row
DENSE = "dense"  # ``method`` of the unmodified layer or model
LEAD = ["layer", "method", "rank", "fraction", "params", "flops", "latency_ms", "latency_batch", "latency_threads", "task"]
TEXT = ("layer", "method", "rank", "task")


def columns(task: Task) -> list[str]:
    """The table's columns for ``task``: the lead columns, one per metric, ``loss`` and ``samples``."""
    metrics = [m.name for m in task.metrics]
    return LEAD + metrics + ([] if "loss" in metrics else ["loss"]) + ["samples"]


COLUMNS = columns(get_task("classification"))  # the columns of a classification sweep



class PointKey(NamedTuple):
    """The identity of a table row: ``(layer, method, rank as text)``."""

    layer: str
    method: str
    rank: str


class Point(NamedTuple):
    """One layer rebuilt by one method at one rank (in the method's vocabulary)."""

    layer: str
    method: str
    rank: Rank

    @property
    def key(self) -> PointKey:
        """The point's row identity, its rank as text."""
        return PointKey(self.layer, self.method, rank_text(self.rank))


def score_columns(scores: Scores) -> dict[str, float | int | str]:
    """The table's task, metric, ``loss`` and ``samples`` columns of an evaluation (a metric the task did not
    report, e.g. ``top5`` with 5 classes or fewer, is left to be NaN)."""
    return {"task": scores.task, **scores.values, "loss": scores.loss, "samples": scores.samples}


def table_task(table: pd.DataFrame) -> Task:
    """The task a (non-empty) table's scores are of."""
    return get_task(str(table["task"].iloc[0]))


def headline_score(table: pd.DataFrame) -> pd.Series:
    """The task's headline metric of every row, signed so that higher is better."""
    task = table_task(table)
    higher = next(m.higher_is_better for m in task.metrics if m.name == task.headline)
    return table[task.headline] if higher else -table[task.headline]


def key_of(row: dict | pd.Series) -> PointKey:
    """The :class:`PointKey` of a table row."""
    return PointKey(row["layer"], row["method"], row["rank"])


def empty_table(task: Task) -> pd.DataFrame:
    """A table of ``task``'s columns and no rows."""
    return pd.DataFrame(columns=columns(task))


def write_table(table: pd.DataFrame, path: str | Path) -> None:
    """Write ``table`` as CSV atomically; floats keep every digit (they read back equal)."""
    atomic_write_text(path, table.to_csv(index=False, float_format=None))


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a table :func:`write_table` wrote; empty text stays ``""`` in the text columns, NaN elsewhere."""
    raw = pd.read_csv(path, dtype={c: str for c in TEXT}, keep_default_na=False)
    numeric = {c: pd.to_numeric(raw[c].replace("", None)) for c in raw.columns if c not in TEXT}
    return raw.assign(**numeric)

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
top1, top5, loss : accuracy and mean cross-entropy of the model with only this layer changed (the
    unmodified model's on dense rows); ``top5`` is NaN for 5 classes or fewer.
samples : evaluation images behind ``top1``/``top5``/``loss``.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pandas as pd

from core.decompose.rank import Rank, rank_text
from core.io import atomic_write_text
from core.profile.accuracy import AccuracyResult

MODEL = ""  # ``layer`` of the whole-model row
DENSE = "dense"  # ``method`` of the unmodified layer or model
COLUMNS = ["layer", "method", "rank", "fraction", "params", "flops", "latency_ms", "latency_batch", "latency_threads",
           "top1", "top5", "loss", "samples"]
TEXT = ("layer", "method", "rank")



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


def score_columns(result: AccuracyResult) -> dict[str, float | int]:
    """The table's ``top1, top5, loss, samples`` of an evaluation (``top5`` NaN where there is none)."""
    return {"top1": result.top1, "top5": float("nan") if result.top5 is None else result.top5,
            "loss": result.loss, "samples": result.samples}


def key_of(row: dict | pd.Series) -> PointKey:
    """The :class:`PointKey` of a table row."""
    return PointKey(row["layer"], row["method"], row["rank"])


def empty_table() -> pd.DataFrame:
    """A table with the columns and no rows."""
    return pd.DataFrame(columns=COLUMNS)


def write_table(table: pd.DataFrame, path: str | Path) -> None:
    """Write ``table`` as CSV atomically; floats keep every digit (they read back equal)."""
    atomic_write_text(path, table[COLUMNS].to_csv(index=False, float_format=None))


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a table :func:`write_table` wrote; empty text stays ``""`` in the text columns, NaN elsewhere."""
    raw = pd.read_csv(path, dtype={c: str for c in TEXT}, keep_default_na=False)
    numeric = {c: pd.to_numeric(raw[c].replace("", None)) for c in COLUMNS if c not in TEXT}
    return raw[list(TEXT)].assign(**numeric)[COLUMNS]

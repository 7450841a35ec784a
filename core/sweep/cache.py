"""Sweep tables on disk, one CSV per (model weights, evaluation subset, method), so sweeps resume.

A file holds every row ever computed for its key, whatever layers or ranks were asked for then; a sweep
reads the files of its methods (and of ``dense``, the baseline rows), computes only the rows missing
and writes the files back atomically (:func:`core.io.atomic_write_text`), so a cancelled or crashed
sweep leaves complete files behind.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core.sweep.table import columns, empty_table, read_table, write_table
from core.task import Task

DEFAULT_FOLDER = Path(".rankscope-cache") / "sweeps"  # relative to the current directory


def data_key(dataset: str, samples: int | None, seed: int) -> str:
    """The evaluation subset's identity: ``"fashion-mnist:2000:0"`` (``all`` for the whole split)."""
    return f"{dataset}:{'all' if samples is None else samples}:{seed}"


@dataclass(frozen=True)
class SweepCache:
    """Where the tables of one evaluation subset live.

    Parameters
    ----------
    data : :func:`data_key` of the subset the accuracies are measured on.
    folder : the cache folder (default ``.rankscope-cache/sweeps`` under the current directory).
    """

    data: str
    folder: Path = DEFAULT_FOLDER

    def path(self, weights: str, task: str, method: str) -> Path:
        """The file of ``method``'s rows under ``task`` for the model whose :func:`core.plan.weights_hash` is ``weights``.

        Classification tables keep the name they had before tasks existed (so caches stay valid).
        """
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.data)
        scored = "" if task == "classification" else f"_{task}"
        return Path(self.folder) / f"{weights}_{slug}{scored}_{method}.csv"

    def load(self, weights: str, task: Task, methods: list[str]) -> pd.DataFrame:
        """Every cached row of ``methods`` under ``task`` (an empty table when none is cached)."""
        parts = [read_table(p) for p in (self.path(weights, task.name, m) for m in methods) if p.is_file()]
        if not parts:
            return empty_table(task)
        return pd.concat(parts, ignore_index=True).assign(task=task.name)[columns(task)]

    def save(self, weights: str, table: pd.DataFrame) -> None:
        """Write ``table``'s rows, one file per method (each file replaced whole)."""
        for method, rows in table.groupby("method", sort=False):
            write_table(rows, self.path(weights, str(rows["task"].iloc[0]), str(method)))

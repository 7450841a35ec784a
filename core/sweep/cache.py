"""Sweep tables on disk, one CSV per (model weights, evaluation subset, method), so sweeps resume.

A file holds every row ever computed for its key, whatever layers or ranks were asked for then; a sweep
reads the files of its methods (and of ``dense``, the baseline rows), computes only the rows missing
and merges them into the files.

Several sweeps may write one cache at once (processes on one machine, or machines sharing the folder over a
file system with working ``flock``): a save takes an exclusive lock on the file's sidecar ``.lock`` file,
re-reads the file, merges by row key (the new rows win) and replaces the file atomically
(:func:`core.io.atomic_write_text`). So no writer's rows are lost, none is duplicated, and a reader (which
takes no lock) sees either the old file or the new one, never a half-written one; a cancelled or crashed
sweep leaves complete files behind.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from filelock import FileLock

from core.sweep.table import columns, empty_table, read_table, write_table
from core.task import Task

DEFAULT_FOLDER = Path(".rankscope-cache") / "sweeps"  # relative to the current directory
KEY = ["layer", "method", "rank"]  # a row's identity (core.sweep.table.PointKey)


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
        """Merge ``table``'s rows into the files of their methods: a row replaces the one of the same key on disk,
        the others stay (each file under its lock, re-read and replaced atomically; see the module docstring)."""
        for method, rows in table.groupby("method", sort=False):
            path = self.path(weights, str(rows["task"].iloc[0]), str(method))
            path.parent.mkdir(parents=True, exist_ok=True)
            # The lock is a sidecar file: the table itself is replaced by a rename, so a lock held on it would
            # guard the old inode while the next writer opens the new one.
            with FileLock(lock_path(path)):
                if path.is_file():
                    rows = merged(read_table(path), rows)
                write_table(rows, path)


def lock_path(path: Path) -> Path:
    """The sidecar file whose lock guards the table at ``path`` (kept after use, as ``flock`` locks need)."""
    return path.with_name(f"{path.name}.lock")


def merged(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """``old``'s rows whose key is not in ``new``, then ``new``'s (the last of a key in ``new`` when repeated)."""
    new = new.drop_duplicates(KEY, keep="last")
    kept = old[~pd.MultiIndex.from_frame(old[KEY]).isin(pd.MultiIndex.from_frame(new[KEY]))]
    if kept.empty:
        return new.reset_index(drop=True)
    return pd.concat([kept, new], ignore_index=True)[list(new.columns)]

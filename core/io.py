"""Atomic file writes: a file (or folder) is either the old one or the complete new one, never half-written."""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import RankscopeError


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) atomically; see :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """A temporary folder beside ``target`` for the block to fill, renamed to ``target`` when the block ends.

    ``target`` is either absent or complete: on an error the temporary folder is removed, and when ``target``
    appeared meanwhile (a concurrent writer finished first) the new one is dropped and ``target`` kept.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp's folder is private to its owner
        if target.exists():
            shutil.rmtree(tmp)
        else:
            os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_writable(path: str | Path) -> None:
    """Raise a one-line :class:`~core.errors.RankscopeError` unless a file can be written at ``path``.

    Checked before the work that produces the file, so minutes of computing are not lost to a bad path:
    ``path`` must not be a folder, and its nearest existing parent must be a writable folder.
    """
    path = Path(path)
    if path.is_dir():
        raise RankscopeError(f"{path} is a folder; give a file path to write")
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise RankscopeError(f"cannot write {path}: {parent} is not a writable folder")

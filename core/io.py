"""Atomic file writes: a file is either the old one or the complete new one, never half-written."""
from __future__ import annotations

import os
import tempfile
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

"""Files in and out of the dashboard: uploads checked and stored, compressed models zipped for download.

A weights file (``.safetensors``, ``.pt``, ``.pth``, ``.bin``) is opened with ``file:<path>`` and an
architecture; a ``.zip`` of a folder written by ``rankscope apply`` (``rankscope.json`` inside) is
unpacked and opened with ``file:<folder>``. Nothing is unpickled here: loading goes through
:mod:`core.models.checkpoint`, which refuses pickled code.
"""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from torch import nn

from core.errors import RankscopeError
from core.io import atomic_write_bytes
from core.plan import Plan
from core.plan.saved import save_compressed

MAX_UPLOAD_MB = 200  # also ``server.maxUploadSize`` in .streamlit/config.toml
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
UPLOAD_SUFFIXES = WEIGHT_SUFFIXES + (".zip",)


def upload_root() -> Path:
    """Where uploads are kept: ``$RANKSCOPE_UPLOADS`` or ``<tmp>/rankscope-uploads``."""
    return Path(os.environ.get("RANKSCOPE_UPLOADS", Path(tempfile.gettempdir()) / "rankscope-uploads"))


def store_upload(data: bytes, filename: str, *, max_mb: float = MAX_UPLOAD_MB, root: Path | None = None) -> Path:
    """Check and store an uploaded file; return the weights file or unpacked folder to open.

    The same bytes always land at the same path (``<root>/<sha256 prefix>/``), so a re-run of the
    dashboard script finds the stored copy instead of writing it again.

    Raises
    ------
    RankscopeError
        Empty or too large, an unsupported file type, a zip that is not a saved rankscope model or
        holds paths outside its folder.
    """
    size_mb = len(data) / 1e6
    if not data:
        raise RankscopeError(f"{filename} is empty")
    if size_mb > max_mb:
        raise RankscopeError(f"{filename} is {size_mb:.1f} MB, more than the {max_mb:g} MB upload limit")
    suffix = Path(filename).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise RankscopeError(f"{filename}: expected one of {', '.join(UPLOAD_SUFFIXES)} (weights, or a zip of a saved model)")
    folder = (root or upload_root()) / hashlib.sha256(data).hexdigest()[:16]
    if suffix != ".zip":
        target = folder / f"weights{suffix}"
        if not target.is_file():
            atomic_write_bytes(target, data)
        return target
    target = folder / "model"
    if not (target / "rankscope.json").is_file():
        _unzip(data, filename, target, max_mb)
    return target


def _unzip(data: bytes, filename: str, target: Path, max_mb: float) -> None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise RankscopeError(f"{filename} is not a zip archive") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if sum(m.file_size for m in members) > max_mb * 1e6 * 4:
            raise RankscopeError(f"{filename} unpacks to more than {4 * max_mb:g} MB")
        names = [PurePosixPath(m.filename) for m in members]
        if any(n.is_absolute() or ".." in n.parts for n in names):
            raise RankscopeError(f"{filename} holds paths outside its folder; refusing to unpack it")
        # a zip of the folder itself has one leading folder name: strip it
        prefix = names[0].parts[0] if names and all(len(n.parts) > 1 and n.parts[0] == names[0].parts[0] for n in names) else None
        if not any((n.parts[1:] if prefix else n.parts) == ("rankscope.json",) for n in names):
            raise RankscopeError(f"{filename} is not a saved rankscope model (no rankscope.json at its top level)")
        for member, name in zip(members, names):
            relative = Path(*name.parts[1:]) if prefix else Path(*name.parts)
            atomic_write_bytes(target / relative, archive.read(member))


def compressed_zip(model: nn.Module, plan: Plan, arch: str) -> bytes:
    """A model compressed by ``plan`` as zip bytes of the folder ``rankscope apply`` writes."""
    with tempfile.TemporaryDirectory(prefix="rankscope-export-") as tmp:
        out = Path(tmp) / "model"
        save_compressed(model, plan, arch, out)
        return zip_folder(out)


def zip_folder(folder: Path) -> bytes:
    """The files of ``folder`` as zip bytes, at the archive's top level (what :func:`store_upload` unpacks)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()

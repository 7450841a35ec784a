"""Fashion-MNIST from its IDX files: the test split ships in ``assets/``, the training split is found locally.

Search order for a split's files: ``$RANKSCOPE_DATA/fashion-mnist``, ``$RANKSCOPE_DATA``, the shipped
``assets/data/fashion-mnist`` (test split only), Debian's ``dataset-fashion-mnist`` folder, then a
torchvision download into ``$RANKSCOPE_DATA`` (or ``~/.cache/rankscope``) when online.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch
import torchvision

from core.errors import RankscopeError
from core.paths import ASSETS

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
from core.external import FASHION_MNIST_DIR as DEBIAN_DIR  # noqa: E402  Debian's dataset-fashion-mnist, declared in core.external


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into an array; the header gives dtype and shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as err:
        raise RankscopeError(f"cannot read {path}: {err}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise RankscopeError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise RankscopeError(f"{path} is truncated: header says {shape}, found {body.size} bytes")
    return body.reshape(shape)


def _candidate_dirs() -> list[Path]:
    dirs = []
    env = os.environ.get("RANKSCOPE_DATA")
    if env:
        dirs += [Path(env) / "fashion-mnist", Path(env), Path(env) / "FashionMNIST" / "raw"]
    dirs += [ASSETS / "data" / "fashion-mnist", DEBIAN_DIR]
    return dirs


def _find(stem: str) -> Path | None:
    for d in _candidate_dirs():
        for name in (stem + ".gz", stem):
            if (d / name).is_file():
                return d / name
    return None


def _download(split: str) -> None:
    """Let torchvision fetch the split (only works online)."""
    root = Path(os.environ.get("RANKSCOPE_DATA", Path.home() / ".cache" / "rankscope"))
    try:
        torchvision.datasets.FashionMNIST(str(root), train=split == "train", download=True)
    except Exception as err:  # no network: say where the files should be instead
        raise RankscopeError(
            f"Fashion-MNIST {split} split not found and could not be downloaded ({type(err).__name__}); "
            "install Debian's dataset-fashion-mnist or put the IDX files in $RANKSCOPE_DATA/fashion-mnist"
        ) from None
    os.environ.setdefault("RANKSCOPE_DATA", str(root))


def load_fashion_mnist(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(images uint8 (N, 1, 28, 28), labels int64 (N,))`` of a split (``"train"`` or ``"test"``)."""
    if split not in FILES:
        raise RankscopeError(f"unknown Fashion-MNIST split {split!r}; expected 'train' or 'test'")
    img_stem, lbl_stem = FILES[split]
    if _find(img_stem) is None or _find(lbl_stem) is None:
        _download(split)
    img_path, lbl_path = _find(img_stem), _find(lbl_stem)
    if img_path is None or lbl_path is None:
        raise RankscopeError(f"Fashion-MNIST {split} files not found in {', '.join(map(str, _candidate_dirs()))}")
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise RankscopeError(f"Fashion-MNIST {split} files disagree: images {images.shape}, labels {labels.shape}")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))

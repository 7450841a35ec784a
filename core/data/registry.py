"""Evaluation datasets by name, shaped for a given model, and deterministic subsets of them.

Names: ``fashion-mnist``, ``cifar10[:ROOT]``, ``cifar100[:ROOT]``, ``imagefolder:PATH``, ``imagenet-samples``,
``photos-labelled``, ``photos[:N]``, for super-resolution models ``set5-like`` and ``sr-patches[:N]``, and for language
models ``shakespeare[:N]``. Every classification loader returns a ``Dataset`` of ``(float image normalised for the model, int
label)`` (``photos`` is unlabelled: its labels are ``core.task.labels.NO_LABEL``); the super-resolution ones of
``(LR image, HR image)`` in [0, 1], and the text one of ``(token ids (T,), next-token ids (T,))``; these name their
task (:mod:`core.data.sr_photos`, :mod:`core.data.text`). A dataset that does not fit the model (channels, image size, classes,
scale) raises :class:`RankscopeError` saying what to change.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

import timm.data
import torch
import torchvision
from torch.utils.data import Dataset, Subset, TensorDataset, default_collate

from core.data.fashion_mnist import load_fashion_mnist
from core.data.image_files import is_image_file
from core.data.imagenet_samples import load_imagenet_samples
from core.data.photos import crop_count, load_photos
from core.data.photos_labelled import load_photos_labelled
from core.data.sr_photos import load_set5_like, load_sr_patches, patch_count
from core.data.text import load_shakespeare, window_count
from core.errors import RankscopeError, close_matches_hint
from core.models.cfg import ModelCfg

DATASETS = ("fashion-mnist", "cifar10", "cifar100", "imagefolder", "imagenet-samples", "photos-labelled", "photos",
            "set5-like", "sr-patches", "shakespeare")


def _check_fit(name: str, shape: tuple[int, int, int], num_classes: int, cfg: ModelCfg) -> None:
    if shape[0] != cfg.input_size[0]:
        raise RankscopeError(
            f"{name} has {shape[0]}-channel images but {cfg.name} expects {cfg.input_size[0]} channels; "
            f"pick a dataset that fits the model (e.g. --data imagefolder:PATH)"
        )
    if tuple(shape[1:]) != tuple(cfg.input_size[1:]):
        raise RankscopeError(
            f"{name} images are {shape[1]}x{shape[2]} but {cfg.name} expects {cfg.input_size[1]}x{cfg.input_size[2]}; "
            "use imagefolder:PATH (resized to the model's input) or a model made for this dataset"
        )
    if num_classes > cfg.num_classes:
        raise RankscopeError(f"{name} has {num_classes} classes but {cfg.name} predicts only {cfg.num_classes}")


def _normalise(images_u8: torch.Tensor, cfg: ModelCfg) -> torch.Tensor:
    mean = torch.tensor(cfg.mean).view(1, -1, 1, 1)
    std = torch.tensor(cfg.std).view(1, -1, 1, 1)
    return (images_u8.float() / 255.0 - mean) / std


def _fashion_mnist(cfg: ModelCfg, split: str) -> Dataset:
    images, labels = load_fashion_mnist(split)
    _check_fit("fashion-mnist", tuple(images.shape[1:]), 10, cfg)
    return TensorDataset(_normalise(images, cfg), labels)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler for the CIFAR python batches that builds only dicts, lists, strings and numpy arrays.

    torchvision's CIFAR classes call ``pickle.load`` (which can run code) and insist on the md5 of the
    full download; this reads a local copy or a subset and refuses anything but array data.
    """

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle protocol
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return _ArrayUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as err:
        raise RankscopeError(f"{path} is not a CIFAR python batch: {err}") from None


def _cifar(name: str, root: str | None, cfg: ModelCfg, split: str) -> Dataset:
    folder = Path(root or os.environ.get("RANKSCOPE_DATA", "."))
    sub, files, meta, key, label_key = {
        "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"],
                    "batches.meta", "label_names", "labels"),
        "cifar100": ("cifar-100-python", [split], "meta", "fine_label_names", "fine_labels"),
    }[name]
    paths = [folder / sub / f for f in files + [meta]]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise RankscopeError(
            f"{name} not found under {folder}: {folder / sub}/ lacks {', '.join(missing)} (the python version of the dataset); "
            f"give the folder as {name}:ROOT or set RANKSCOPE_DATA"
        )
    batches = [_read_cifar_batch(p) for p in paths[:-1]]
    classes = _read_cifar_batch(paths[-1])[key]
    data = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32))  # (N, 3, 32, 32) uint8, channels first as stored
    labels = torch.tensor([int(v) for b in batches for v in b[label_key]], dtype=torch.int64)
    _check_fit(name, tuple(images.shape[1:]), len(classes), cfg)
    return TensorDataset(_normalise(images, cfg), labels)


SPLIT_FOLDERS = {"train": ("train",), "test": ("val", "test")}  # ImageNet-style sub-folders of an imagefolder root


def _split_folder(path: str, split: str) -> Path:
    """The folder of ``split`` under an imagefolder root: ``train/`` or ``val/``/``test/`` when present.

    A root without them is one set of class folders: it serves as test data only, so that training
    (fine-tuning, allocation) never runs on the images accuracy is reported on.
    """
    root = Path(path)
    if not root.is_dir():
        raise RankscopeError(f"imagefolder path {root} is not a folder (expected one sub-folder of images per class)")
    for name in SPLIT_FOLDERS[split]:
        if (root / name).is_dir():
            return root / name
    if split == "train":
        raise RankscopeError(f"imagefolder {root} has no train/ folder: training data must be kept apart from the "
                             "evaluation images (put them in train/ and val/)")
    return root


def _imagefolder(path: str, cfg: ModelCfg, split: str) -> Dataset:
    folder = _split_folder(path, split)
    c, h, w = cfg.input_size
    # The model's own eval preprocessing (resize, centre crop, normalise), as timm builds it for its models.
    transform = timm.data.create_transform(input_size=(3, h, w), mean=(0.0,) * 3, std=(1.0,) * 3, crop_pct=0.875 if h > 64 else 1.0)
    mean = torch.tensor(cfg.mean).view(-1, 1, 1)
    std = torch.tensor(cfg.std).view(-1, 1, 1)

    def load(p: str) -> torch.Tensor:
        x = transform(torchvision.datasets.folder.default_loader(p))  # (3, h, w) in [0, 1]
        x = x.mean(0, keepdim=True) if c == 1 else x
        return (x - mean) / std

    try:
        ds = torchvision.datasets.DatasetFolder(str(folder), loader=load, is_valid_file=is_image_file)
    except (FileNotFoundError, RuntimeError) as err:
        raise RankscopeError(f"imagefolder {folder}: {str(err).splitlines()[0]}") from None
    if len(ds.classes) > cfg.num_classes:
        raise RankscopeError(f"imagefolder {folder} has {len(ds.classes)} classes but {cfg.name} predicts only {cfg.num_classes}")
    return ds


def load_dataset(name: str, cfg: ModelCfg, split: str = "test") -> Dataset:
    """Load evaluation data ``name`` preprocessed for the model described by ``cfg``.

    Parameters
    ----------
    name : ``fashion-mnist``, ``cifar10[:ROOT]``, ``cifar100[:ROOT]``, ``imagefolder:PATH``, ``imagenet-samples``,
        ``photos-labelled``, ``photos[:N]`` (N crops), ``set5-like``, ``sr-patches[:N]`` (N patch pairs) or
        ``shakespeare[:N]`` (the first N token windows, or ``all``).
    cfg : the model's metadata (input size, classes, normalisation).
    split : ``"test"`` or ``"train"``.
    """
    if split not in SPLIT_FOLDERS:
        raise RankscopeError(f"split {split!r} must be 'train' or 'test'")
    kind, _, arg = name.partition(":")
    if kind == "fashion-mnist":
        return _fashion_mnist(cfg, split)
    if kind in ("cifar10", "cifar100"):
        return _cifar(kind, arg or None, cfg, split)
    if kind == "imagefolder":
        if not arg:
            raise RankscopeError("imagefolder needs a path: imagefolder:PATH")
        return _imagefolder(arg, cfg, split)
    if kind == "imagenet-samples":
        return load_imagenet_samples(cfg, split)
    if kind == "photos-labelled":
        return load_photos_labelled(cfg, split)
    if kind == "photos":
        return load_photos(cfg, split, crop_count(arg))
    if kind == "set5-like":
        return load_set5_like(cfg, split)
    if kind == "sr-patches":
        return load_sr_patches(cfg, split, patch_count(arg))
    if kind == "shakespeare":
        return load_shakespeare(cfg, split, window_count(arg, split))
    raise RankscopeError(f"unknown dataset {name!r}" + close_matches_hint(kind, list(DATASETS)) + f"; known: {', '.join(DATASETS)}")


def default_dataset(cfg: ModelCfg, name: str | None = None) -> str:
    """``name`` when given, else the model's own dataset when rankscope can load it by name, else ``""``."""
    if name:
        return name
    return cfg.dataset if cfg.dataset.partition(":")[0] in DATASETS else ""


def eval_subset(dataset: Dataset, samples: int | None, seed: int = 0) -> Dataset:
    """A deterministic subset of ``samples`` items drawn without replacement with ``seed`` (all when ``None``).

    Subsets with the same seed are nested: the first 500 of a 2,000-sample subset are the 500-sample subset.
    """
    n = len(dataset)  # type: ignore[arg-type]
    if samples is None or samples >= n:
        return dataset
    if samples < 1:
        raise RankscopeError(f"--samples must be at least 1, got {samples}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return Subset(dataset, order[:samples].tolist())


# Data sets without a training split of their own, and where compression and recovery learn instead: the
# calibration photos are disjoint from every evaluation image (see core.data.photos and core.data.sr_photos).
TRAINING_SOURCE = {"imagenet-samples": "photos:16384", "photos-labelled": "photos:16384", "set5-like": "sr-patches:4096"}


def training_data(name: str, cfg: ModelCfg) -> Dataset:
    """What allocation and recovery may learn from for evaluation data ``name``: its ``train`` split, or for a data
    set without one the training split of its :data:`TRAINING_SOURCE` (``imagenet-samples``, ``photos-labelled``:
    crops of the calibration photos, unlabelled; ``set5-like``: patch pairs of the super-resolution calibration photos).

    Raises
    ------
    RankscopeError
        ``name`` has no training split (an image folder without ``train/``): it is never trained on.
    """
    kind = name.partition(":")[0]
    return load_dataset(TRAINING_SOURCE.get(kind, name), cfg, split="train")


def calibration_batch(name: str, cfg: ModelCfg, samples: int = 256, seed: int = 0) -> torch.Tensor:
    """A batch of model inputs for data-aware methods, from :func:`training_data` (the test split if there is none).

    Calibrating on training images keeps the test images unseen by the compression.
    """
    return labelled_batch(name, cfg, samples, seed)[0]


def labelled_batch(name: str, cfg: ModelCfg, samples: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets of :func:`calibration_batch` (gradient-based pruning scores need the labels; ``-1`` where
    the data set has none; HR patches for super-resolution): from :func:`training_data`, or the test split where
    there is no training split."""
    try:
        dataset = training_data(name, cfg)
    except RankscopeError:
        dataset = load_dataset(name, cfg, split="test")
    subset = eval_subset(dataset, samples, seed)
    inputs, targets = default_collate([subset[i] for i in range(len(subset))])  # int labels become an int64 tensor
    return inputs, targets

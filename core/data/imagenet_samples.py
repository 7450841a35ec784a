"""``imagenet-samples``: the 20 labelled ImageNet validation photos that PyPI's ``foolbox`` ships.

The files are ``foolbox/data/imagenet_NN_LABEL.jpg`` (see :data:`core.external.IMAGENET_PHOTOS`), ``LABEL``
being the ImageNet-1k class index as torchvision and timm number the classes. They are found through the
installed distribution's metadata; foolbox itself is never imported (installed without its dependencies, it
would not import). Each photo gets torchvision's ImageNet evaluation preprocessing at the model's input size.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from core.data.image_files import open_all_rgb
from core.data.image_transforms import eval_transform
from core.errors import RankscopeError
from core.external import IMAGENET_PHOTOS, ZOO, zoo_file
from core.models.cfg import ModelCfg

NAME = "imagenet-samples"
PACKAGE = "foolbox"
IMAGENET_CLASSES = 1000


def label_of(path: Path) -> int:
    """The class index in a foolbox sample's file name ``imagenet_<index>_<label>.jpg``: ``imagenet_07_609.jpg`` -> 609."""
    return int(path.stem.rsplit("_", 1)[1])


def load_imagenet_samples(cfg: ModelCfg, split: str = "test") -> TensorDataset:
    """The 20 photos as ``(normalised image (C, H, W) at cfg.input_size, ImageNet class index)``.

    Parameters
    ----------
    cfg : the model's metadata; it must predict the 1,000 ImageNet classes.
    split : ``"test"``; these photos are evaluation data only, so ``"train"`` is refused.

    Raises
    ------
    RankscopeError
        foolbox not installed (``make run`` / ``make test`` install it), a ``"train"`` split, or a model with
        fewer than 1,000 classes. A photo that does not decode is left out with an ``UnreadableImageWarning``.
    """
    if split != "test":
        raise RankscopeError(f"{NAME} is 20 evaluation photos and has no training split; calibrate on `photos` instead")
    if cfg.num_classes < IMAGENET_CLASSES:
        raise RankscopeError(f"{NAME} has ImageNet labels (1000 classes) but {cfg.name} predicts only {cfg.num_classes}")
    transform = eval_transform(cfg)
    photos = open_all_rgb(zoo_file(PACKAGE, relpath) for relpath in IMAGENET_PHOTOS)
    if not photos:
        raise RankscopeError(f"none of the {NAME} photos of the PyPI package {PACKAGE} could be read: reinstall it "
                             f"(pip install --force-reinstall --no-deps {PACKAGE}=={ZOO[PACKAGE].version})")
    images = torch.stack([transform(image) for _, image in photos])  # (N, C, H, W)
    labels = torch.tensor([label_of(path) for path, _ in photos], dtype=torch.int64)
    return TensorDataset(images, labels)

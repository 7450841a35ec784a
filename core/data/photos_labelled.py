"""``photos-labelled``: the evaluation photos of the pool whose subject is, beyond doubt, one ImageNet-1k class.

A second small labelled set beside ``imagenet-samples``, for ImageNet classifiers: 17 photos of the ``photos``
evaluation split (:data:`core.data.photos.EVALUATION_PHOTOS`) whose GCompris name and credited source name the
species or object of a class, labelled with that class (:data:`IMAGENET_LABELS`; torchvision's and timm's
numbering). Only the evaluation side is labelled, so nothing calibrated or trained on ``photos`` is scored here,
and a photo is labelled only where the mapping is certain: an aqueduct is not called a viaduct, a sheep not a
ram, an Aylesbury duck not a drake. Each photo gets torchvision's ImageNet evaluation preprocessing at the model's
input size, as ``imagenet-samples`` does.
"""
from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from core.data.image_transforms import eval_transform
from core.data.photos import EVALUATION_PHOTOS, PhotoImages, photo_sources
from core.errors import RankscopeError
from core.models.cfg import ModelCfg

NAME = "photos-labelled"
IMAGENET_CLASSES = 1000
IMAGENET_LABELS = {
    "erase/bee": 309,  # bee
    "erase/chamaeleon": 47,  # African chameleon, Chamaeleo chamaeleon (the species photographed)
    "erase/cheetah": 293,  # cheetah
    "erase/meerkats": 299,  # meerkat
    "explore_world_animals/bison": 347,  # bison (American bison)
    "explore_world_animals/scarlet_macaw": 88,  # macaw
    "explore_farm_animals/dog": 235,  # German shepherd
    "categorization/fishes/fish25": 1,  # goldfish (its source: Goldfisch_1.jpg)
    "categorization/tools/hammer1": 587,  # hammer
    "categorization/tools/hammer6": 587,  # hammer
    "categorization/tools/screwDriver2": 784,  # screwdriver
    "categorization/others/bucket": 463,  # bucket, pail (a milk pail)
    "categorization/others/plate": 923,  # plate
    "categorization/others/pillow": 721,  # pillow
    "categorization/others/pan": 567,  # frying pan (cast iron)
    "categorization/renewable/dam3": 525,  # dam
    "categorization/renewable/dam5": 525,  # dam
}
"""Evaluation photo -> its ImageNet-1k class index."""


def load_photos_labelled(cfg: ModelCfg, split: str = "test") -> TensorDataset:
    """The labelled photos as ``(normalised image (C, H, W) at cfg.input_size, ImageNet class index)``.

    Parameters
    ----------
    cfg : the model's metadata; it must predict the 1,000 ImageNet classes.
    split : ``"test"``; these photos are evaluation data only, so ``"train"`` is refused.

    Raises
    ------
    RankscopeError
        A ``"train"`` split, a model with fewer than 1,000 classes, a package of the photos missing, or no photo
        readable. A photo that does not read is left out with an ``UnreadableImageWarning`` naming it.
    """
    if split != "test":
        raise RankscopeError(f"{NAME} is {len(IMAGENET_LABELS)} evaluation photos and has no training split; "
                             "calibrate on `photos` instead")
    if cfg.num_classes < IMAGENET_CLASSES:
        raise RankscopeError(f"{NAME} has ImageNet labels (1000 classes) but {cfg.name} predicts only "
                             f"{cfg.num_classes}")
    sources = photo_sources([p for p in EVALUATION_PHOTOS if p.name in IMAGENET_LABELS])
    images = PhotoImages(list(sources.values()))
    kept = [(photo, image) for k, photo in enumerate(sources) if (image := images.image(k)) is not None]
    if not kept:
        raise RankscopeError(f"none of the {NAME} photos could be read")
    transform = eval_transform(cfg)
    return TensorDataset(torch.stack([transform(image) for _, image in kept]),  # (N, C, H, W)
                         torch.tensor([IMAGENET_LABELS[photo.name] for photo, _ in kept], dtype=torch.int64))

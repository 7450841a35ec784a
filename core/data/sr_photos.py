"""Super-resolution data: ``set5-like`` (five whole lossless photos to evaluate on) and ``sr-patches[:N]`` (seeded
patch pairs, the calibration photos' for training and calibration).

No package of a registry ships Set5, Set14, B100 or DIV2K, so the evaluation set is built here from lossless
colour photos that are installed anyway: the five PNGs of the ``photos`` evaluation split (:data:`SET5_LIKE`:
a person, a vehicle, a micrograph, a landscape, flowers; 500-741 px a side, as Set5's are 228-512). Every item
is ``(LR, HR)``: the HR photo cropped at the right and bottom to a multiple of the model's scale, and its PIL
bicubic downscale by the scale (:func:`core.task.images.downscale`, the degradation with which the converted
models reproduce their published PSNRs), both float (3, H, W) RGB in [0, 1], not normalised. The photos differ
in size, so they are evaluated one at a time (``max_batch = 1``); one with a low-resolution side over :data:`TILE`
pixels is run on tiles of that side overlapping by the model's receptive field (``tiling``), which bounds memory and
leaves the output as it is (:func:`core.profile.tiles.tiled_forward`).

Calibration and recovery never see them: ``sr-patches``' ``train`` split cuts its pairs from :data:`SR_CALIBRATION`
(the five lossless photos of the first ``photos`` calibration split) and :data:`SR_POOL` (the 94 calibration
photos of the pool with a long side of 1000 px or more: GCompris' animals, monuments and musicians, lomiri's
wallpapers; lossy, WebP or JPEG, and those over 1024 px reduced to it, which hides most of their artefacts).
Patch ``i`` is an HR square of ``scale`` x the model's input size at a position drawn with a seed made from
``(seed, i)``, and its bicubic downscale; its ``test`` split cuts patches of :data:`SET5_LIKE` the same way (fixed
size, so they batch). Each photo is decoded when a patch first needs it (:class:`core.data.photos.PhotoImages`).

An image that does not decode, is not 8-bit RGB (greyscale, with alpha) or is smaller than ``scale`` x the
model's receptive field is named in a warning and left out; the others are used (``sr-patches`` warns when a patch
first needs the photo, and the next photo stands in for it, as for ``photos``).
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from core.data.image_files import MODE_NAMES, open_exact_rgb, skip_unsuitable
from core.data.photo_pool import FIRST_CALIBRATION, FIRST_EVALUATION
from core.data.photos import CALIBRATION_PHOTOS, Photo, PhotoImages, crop_seed, photo_sources
from core.errors import RankscopeError
from core.models.cfg import ModelCfg
from core.task.images import downscale, from_pil, mod_crop
from core.task.super_resolution import task_name

SET5_LIKE_NAME = "set5-like"
PATCHES_NAME = "sr-patches"
DEFAULT_PATCHES = 1024
TILE = 512  # LR pixels a side above which a photo is evaluated on tiles (SRMD: 148 MB per activation at most)
SET5_LIKE = tuple(p for p in FIRST_EVALUATION if p.name in ("astronaut", "motorcycle", "immunohistochemistry", "coast",
                                                             "tulips"))
"""The five evaluation photos: the lossless (PNG) members of the ``photos`` evaluation split."""
SR_CALIBRATION = tuple(p for p in FIRST_CALIBRATION if p.name != "retina")
"""Lossless photos ``sr-patches``' ``train`` split cuts: the six first calibration photos but their JPEG (retina)."""
SR_POOL = tuple(p for p in CALIBRATION_PHOTOS if p.high_res)
"""The high-resolution (long side 1000 px or more) calibration photos of the pool, which ``sr-patches`` cuts too."""


def _check_model(name: str, cfg: ModelCfg) -> None:
    if cfg.scale < 2 or cfg.input_size[0] != 3:
        raise RankscopeError(f"{name} is data for RGB super-resolution models (a scale of 2 or more); {cfg.name} has "
                             f"scale {cfg.scale} and {cfg.input_size[0]} input channels")


def open_hr(path: Path, cfg: ModelCfg, side: int | None = None) -> Image.Image | None:
    """The photo at ``path`` as an HR image for a model of ``cfg.scale``: 8-bit RGB, cropped to a multiple of the
    scale; ``None`` after a warning naming it when it does not decode, is not RGB, or has a side under ``side``
    (default: ``scale`` x the model's receptive field)."""
    image = open_exact_rgb(path)
    return None if image is None else fit_hr(str(path), image, cfg, side)


def fit_hr(where: str, image: Image.Image, cfg: ModelCfg, side: int | None = None) -> Image.Image | None:
    """``image`` cropped to a multiple of ``cfg.scale``; ``None`` after a warning naming ``where`` when it is not
    8-bit RGB or has a side under ``side`` (default: ``scale`` x the model's receptive field)."""
    if image.mode != "RGB":
        skip_unsuitable(where, f"an image of mode {image.mode} ({MODE_NAMES.get(image.mode, 'not 8-bit RGB')}); "
                               "only 8-bit RGB photos are used")
        return None
    least = side or cfg.scale * cfg.receptive_field
    if min(image.size) < least:
        skip_unsuitable(where, f"{image.width}x{image.height} is smaller than {least} px a side (x{cfg.scale} "
                               f"{'patches of' if side else 'the receptive field of'} {cfg.name})")
        return None
    return mod_crop(image, cfg.scale)


def _hr_images(photos: tuple[Photo, ...], cfg: ModelCfg, what: str, side: int | None = None) -> list[tuple[str, Image.Image]]:
    images = [(photo.name, image) for photo in photos if (image := open_hr(photo.file(), cfg, side)) is not None]
    if not images:
        raise RankscopeError(f"none of the photos of {what} could be used for {cfg.name}")
    return images


class SRImages(Dataset):
    """Whole ``(LR (3, H, W), HR (3, sH, sW))`` pairs in [0, 1], one per photo, scored by ``task``.

    Attributes
    ----------
    names : the photos' names, in item order.
    task : the registry name of the task that scores them (``super-resolution-x<scale>``).
    max_batch : 1, the images differ in size.
    tiling : ``(TILE, margin)``, how the evaluation cuts large photos (:func:`core.profile.tiles.tiled_forward`).
    """

    max_batch = 1

    def __init__(self, images: list[tuple[str, Image.Image]], scale: int, margin: int) -> None:
        self.names = [name for name, _ in images]
        self.task = task_name(scale)
        self.tiling = (TILE, margin)
        self.pairs = [(from_pil(downscale(hr, scale)), from_pil(hr)) for _, hr in images]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pairs[index]


class SRPatches(Dataset):
    """``count`` seeded ``(LR (3, h, w), HR (3, s·h, s·w))`` patch pairs of ``images``, for a model of ``scale``.

    Patch ``i`` comes from ``images[i % len(images)]``; its corner (a multiple of the scale) is drawn from a
    generator seeded by :func:`core.data.photos.crop_seed` ``(seed, i)``, so every patch is the same on every run
    and the first N of a longer set are the N-patch set.
    """

    def __init__(self, images: Sequence[Image.Image], count: int, scale: int, size: tuple[int, int],
                 seed: int = 0) -> None:
        self.images, self.count, self.scale, self.size, self.seed = images, count, scale, size, seed
        self.task = task_name(scale)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.count:
            raise IndexError(f"patch {index} of {self.count}")
        image = self.images[index % len(self.images)]
        s, (h, w) = self.scale, self.size
        generator = torch.Generator().manual_seed(crop_seed(self.seed, index))
        top = int(torch.randint(0, (image.height - s * h) // s + 1, (1,), generator=generator)) * s
        left = int(torch.randint(0, (image.width - s * w) // s + 1, (1,), generator=generator)) * s
        hr = image.crop((left, top, left + s * w, top + s * h))
        return from_pil(downscale(hr, s)), from_pil(hr)


def load_set5_like(cfg: ModelCfg, split: str = "test") -> SRImages:
    """The five :data:`SET5_LIKE` photos as ``(LR, HR)`` pairs for ``cfg``'s scale.

    Raises
    ------
    RankscopeError
        A ``"train"`` split (it is evaluation data only), a model that is not an RGB super-resolution model, or no
        usable photo. An unusable photo is left out with a warning naming it.
    """
    if split != "test":
        raise RankscopeError(f"{SET5_LIKE_NAME} is five evaluation photos and has no training split; calibrate on "
                             f"{PATCHES_NAME} instead")
    _check_model(SET5_LIKE_NAME, cfg)
    return SRImages(_hr_images(SET5_LIKE, cfg, SET5_LIKE_NAME), cfg.scale, cfg.receptive_field)


def patch_count(arg: str) -> int:
    """The N of ``sr-patches:N`` (:data:`DEFAULT_PATCHES` for a bare ``sr-patches``)."""
    if not arg:
        return DEFAULT_PATCHES
    if not arg.isdigit() or int(arg) < 1:
        raise RankscopeError(f"{PATCHES_NAME}:{arg}: the number of patches must be a positive integer, "
                             f"e.g. {PATCHES_NAME}:{DEFAULT_PATCHES}")
    return int(arg)


def load_sr_patches(cfg: ModelCfg, split: str = "test", count: int = DEFAULT_PATCHES, seed: int = 0) -> SRPatches:
    """``count`` patch pairs with the LR patch at ``cfg.input_size``: of :data:`SR_CALIBRATION` and :data:`SR_POOL`
    for ``"train"``, of :data:`SET5_LIKE` for ``"test"``.

    Raises
    ------
    RankscopeError
        A model that is not an RGB super-resolution model, or a package of the photos missing. A photo that does
        not decode, is not RGB or is too small for the patches is named in a warning when a patch first needs it,
        and the next photo stands in for it; a RankscopeError if none is usable.
    """
    _check_model(PATCHES_NAME, cfg)
    photos = SR_CALIBRATION + SR_POOL if split == "train" else SET5_LIKE
    side = cfg.scale * max(cfg.input_size[1:])
    sources = photo_sources(photos)
    if not sources:
        raise RankscopeError(f"none of the photos of {PATCHES_NAME} ({split}) could be read")
    images = PhotoImages(list(sources.values()), accept=partial(fit_hr, cfg=cfg, side=side))
    return SRPatches(images, count, cfg.scale, tuple(cfg.input_size[1:]), seed)

"""``photos[:N]``: unlabelled real colour photographs, as seeded random crops at the model's input size.

Fidelity to the uncompressed model needs inputs like the ones the model meets, not labels. The photos are the
330 photographs of :mod:`core.data.photo_pool` (scikit-image's, and Debian's libjxl-testdata, gcompris-qt-data,
scratch and lomiri-wallpapers-16.04; none downloaded); from them :class:`PhotoCrops` makes as many inputs as asked:
crop ``i`` is a random resized crop, flipped horizontally half the time, of photo ``i mod P``, drawn with a seed
made from ``(seed, i)``, so every crop is the same on every run and the first N crops of a longer set are the
N-crop set.

Calibration and evaluation never share a photo: the ``"train"`` split (what ``calibration_batch`` reads) crops
the 234 photos of :data:`CALIBRATION_PHOTOS` (so 2,048 calibration crops visit each about nine times), the
``"test"`` split the 96 of :data:`EVALUATION_PHOTOS`; both mix sources and subjects (the split:
:func:`core.data.photo_pool.side`). Labels are :data:`~core.task.labels.NO_LABEL`.

A photo is decoded when a crop first needs it and kept (:class:`PhotoImages`); a lossy one (JPEG, WebP) is
reduced to at most :data:`MAX_SIDE` pixels on its long side (which, where it shrinks a photo, also hides most of
its compression artefacts) to bound memory (1 MB a photo on average, 250 MB for all 234 calibration photos), a
lossless one (PNG) kept as it is. ``load_photos(imagenet-mobilenetv2's cfg, "train", 512)`` takes 0.04 s and its
first 64 crops 1.4 s on one torch thread, 1.2 s of which decode their 64 photos (measured on two busy cores, where
two torch threads made each crop's small tensor operations 25 ms slower, as with the thirteen photos of old).
"""
from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from core.data.image_files import UnreadableImageWarning
from core.data.image_transforms import crop_transform
from core.data.photo_pool import GCOMPRIS, SPLIT_PHOTOS, Photo
from core.data.rcc import read_rcc
from core.errors import RankscopeError
from core.models.cfg import ModelCfg
from core.task.labels import NO_LABEL

NAME = "photos"
DEFAULT_CROPS = 512
MAX_SIDE = 1024  # long side a lossy photo is reduced to
LOSSLESS = ("PNG",)  # formats kept at full resolution
CALIBRATION_PHOTOS = SPLIT_PHOTOS["train"]
"""Photos the ``"train"`` split crops (calibration of data-aware methods)."""
EVALUATION_PHOTOS = SPLIT_PHOTOS["test"]
"""Photos the ``"test"`` split crops (fidelity evaluation)."""

Source = tuple[str, Path | bytes]  # (where, for messages: the file or "bundle:entry"; the file or the entry's bytes)


def _unreadable(where: str, err: Exception) -> None:
    reason = (str(err).splitlines() or [type(err).__name__])[0]
    warnings.warn(f"skipped {where}: not a readable image ({reason})", UnreadableImageWarning, stacklevel=3)


def photo_sources(photos: Sequence[Photo]) -> dict[Photo, Source]:
    """Where each readable one of ``photos`` can be read, in order: its file, or its entry's bytes from its bundle.

    Raises
    ------
    RankscopeError
        A package is not installed (the message names the ``make`` target and package that install it). A bundle
        that does not read, or an entry missing from it, is named in an ``UnreadableImageWarning`` and its photos
        are left out.
    """
    files = [photo.file() for photo in photos]  # every package is checked before any bundle is read
    bundles: dict[Path, dict[str, bytes]] = {}
    for file in dict.fromkeys(f for f, p in zip(files, photos) if p.package == GCOMPRIS):
        try:
            bundles[file] = read_rcc(file, {p.entry for f, p in zip(files, photos) if f == file})
        except RankscopeError as err:
            warnings.warn(f"skipped the photos of {file}: {err}", UnreadableImageWarning, stacklevel=2)
    sources: dict[Photo, Source] = {}
    for file, photo in zip(files, photos):
        if photo.package != GCOMPRIS:
            sources[photo] = (str(file), file)
        elif file in bundles and photo.entry in bundles[file]:
            sources[photo] = (f"{file}:{photo.entry}", bundles[file][photo.entry])
        elif file in bundles:
            warnings.warn(f"skipped {file}:{photo.entry}: no such entry in the bundle", UnreadableImageWarning,
                          stacklevel=2)
    return sources


def to_rgb(where: str, image: Image.Image) -> Image.Image:
    """``image`` in RGB (grey repeated, alpha dropped): what :class:`PhotoImages` gives crops by default."""
    return image.convert("RGB")


class PhotoImages(Sequence[Image.Image]):
    """The images of ``sources``, each decoded the first time it is asked for and kept.

    An image that does not decode, or is not accepted, is warned about once and the next one in order stands
    in for it, so the images are the same on every run with the same files.

    Parameters
    ----------
    sources : ``(where, file or bytes)`` of each image (the values of :func:`photo_sources`); ``where`` names it
        in warnings.
    max_side : a lossy image (not :data:`LOSSLESS`) is reduced to at most this many pixels on its long side (a
        JPEG decoded at a reduced scale already).
    accept : ``accept(where, image)`` makes the kept image from the decoded one, or returns ``None`` after a
        warning naming ``where``.
    """

    def __init__(self, sources: list[Source], max_side: int = MAX_SIDE,
                 accept: Callable[[str, Image.Image], Image.Image | None] = to_rgb) -> None:
        self.sources, self.max_side, self.accept = sources, max_side, accept
        self.decoded: dict[int, Image.Image | None] = {}

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> Image.Image:  # type: ignore[override]
        if not 0 <= index < len(self):
            raise IndexError(f"photo {index} of {len(self)}")
        for step in range(len(self)):
            if (image := self.image((index + step) % len(self))) is not None:
                return image
        raise RankscopeError(f"none of the {len(self)} photos could be used: "
                             f"{', '.join(where for where, _ in self.sources[:3])}, ...")

    def image(self, index: int) -> Image.Image | None:
        """Image ``index`` itself, decoded once; ``None`` (warned about the first time) when it is not usable."""
        if index not in self.decoded:
            self.decoded[index] = self._decode(*self.sources[index])
        return self.decoded[index]

    def _decode(self, where: str, source: Path | bytes) -> Image.Image | None:
        try:
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
                if image.format in LOSSLESS:
                    image.load()
                else:
                    image.thumbnail((self.max_side, self.max_side), Image.Resampling.LANCZOS)
                return self.accept(where, image)
        except (OSError, ValueError, Image.DecompressionBombError) as err:  # UnidentifiedImageError is an OSError
            _unreadable(where, err)
            return None


def crop_seed(seed: int, index: int) -> int:
    """The torch seed of crop ``index`` of a set drawn with ``seed`` (numpy's ``SeedSequence`` mixes the two)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


class PhotoCrops(Dataset):
    """``count`` seeded random crops of ``photos``, as ``(normalised image (C, H, W), NO_LABEL)``.

    Crop ``i`` comes from ``photos[i % len(photos)]`` with torch's generator seeded by :func:`crop_seed`
    inside ``torch.random.fork_rng``, so the caller's random state is left as it was.
    """

    has_labels = False

    def __init__(self, photos: Sequence[Image.Image], count: int, transform: v2.Transform, seed: int = 0) -> None:
        self.photos, self.count, self.transform, self.seed = photos, count, transform, seed

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.count:
            raise IndexError(f"crop {index} of {self.count}")
        photo = self.photos[index % len(self.photos)]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(crop_seed(self.seed, index))
            return self.transform(photo), NO_LABEL


def crop_count(arg: str) -> int:
    """The N of ``photos:N`` (:data:`DEFAULT_CROPS` for a bare ``photos``)."""
    if not arg:
        return DEFAULT_CROPS
    if not arg.isdigit() or int(arg) < 1:
        raise RankscopeError(f"{NAME}:{arg}: the number of crops must be a positive integer, e.g. {NAME}:{DEFAULT_CROPS}")
    return int(arg)


def load_photos(cfg: ModelCfg, split: str = "test", count: int = DEFAULT_CROPS, seed: int = 0) -> PhotoCrops:
    """``count`` crops of the ``split``'s photos, at ``cfg.input_size`` and normalised for the model.

    Parameters
    ----------
    cfg : the model's metadata (input size, channels, normalisation); grey for a one-channel model.
    split : ``"test"`` (:data:`EVALUATION_PHOTOS`) or ``"train"`` (:data:`CALIBRATION_PHOTOS`).
    count : number of crops.
    seed : draws a different, equally reproducible set of crops.

    Raises
    ------
    RankscopeError
        A package of the photos is missing (``make run`` / ``make test`` install them), or no photo is readable.
        A bundle or photo that does not read is left out with an ``UnreadableImageWarning`` naming it.
    """
    sources = photo_sources(SPLIT_PHOTOS[split])
    if not sources:
        raise RankscopeError(f"none of the {NAME} of the {split} split could be read")
    return PhotoCrops(PhotoImages(list(sources.values())), count, crop_transform(cfg), seed)

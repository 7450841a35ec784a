"""``photos[:N]``: unlabelled real colour photographs, as seeded random crops at the model's input size.

Fidelity to the uncompressed model needs inputs like the ones the model meets, not labels. The photos are the
colour photographs that ship inside scikit-image (no download) and Debian's ``libjxl-testdata`` (lossless
PNGs); from them :class:`PhotoCrops` makes as many inputs as asked: crop ``i`` is a random resized crop,
flipped horizontally half the time, of photo ``i mod P``, drawn with a seed made from ``(seed, i)``, so every
crop is the same on every run and the first N crops of a longer set are the N-crop set.

Calibration and evaluation never share a photo: the ``"train"`` split (what ``calibration_batch`` reads)
crops :data:`CALIBRATION_PHOTOS`, the ``"test"`` split :data:`EVALUATION_PHOTOS`, a fixed split that mixes
sources and subjects on both sides. Labels are :data:`~core.task.labels.NO_LABEL`.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from core.data.image_files import open_all_rgb
from core.data.image_transforms import crop_transform
from core.task.labels import NO_LABEL
from core.errors import RankscopeError
from core.external import LIBJXL_TESTDATA_DIR, debian_path, zoo_file
from core.models.cfg import ModelCfg

NAME = "photos"
DEFAULT_CROPS = 512
SKIMAGE = "scikit-image"  # PyPI, a dependency in pyproject.toml; files relative to site-packages
LIBJXL = "libjxl-testdata"  # Debian; files relative to LIBJXL_TESTDATA_DIR


class Photo(NamedTuple):
    """One source photograph: which package holds it, where inside it, and whose it is."""

    name: str
    package: str  # SKIMAGE or LIBJXL
    path: str  # inside the package
    credit: str  # author or source, and licence

    def file(self) -> Path:
        """Where the photo lies on this machine, or a RankscopeError naming the package to install."""
        if self.package == LIBJXL:
            return debian_path(LIBJXL_TESTDATA_DIR / self.path)
        return zoo_file(self.package, self.path)


CALIBRATION_PHOTOS = (
    Photo("chelsea", SKIMAGE, "skimage/data/chelsea.png", "Stefan van der Walt, CC0"),
    Photo("coffee", SKIMAGE, "skimage/data/coffee.png", "Rachel Michetti, CC0"),
    Photo("retina", SKIMAGE, "skimage/data/retina.jpg", "Mikael Häggström, CC0"),
    Photo("flower", LIBJXL, "jxl/flower/flower.png", "JPEG XL project test data, BSD-3-Clause"),
    Photo("hdr-room", LIBJXL, "jxl/hdr_room.png", "JPEG XL project test data, BSD-3-Clause"),
    Photo("blossom", LIBJXL, "external/wesaturate/500px/u76c0g_bliznaca_srgb8.png", "wesaturate.com, CC0"),
)
"""Photos the ``"train"`` split crops (calibration of data-aware methods): cat, cup, fundus, flowers, room, twigs."""

EVALUATION_PHOTOS = (
    Photo("astronaut", SKIMAGE, "skimage/data/astronaut.png", "NASA, public domain"),
    Photo("motorcycle", SKIMAGE, "skimage/data/motorcycle_left.png", "Middlebury 2014 stereo benchmark (via scikit-image)"),
    Photo("rocket", SKIMAGE, "skimage/data/rocket.jpg", "SpaceX, public domain"),
    Photo("immunohistochemistry", SKIMAGE, "skimage/data/ihc.png", "CMMI, no known copyright restrictions"),
    Photo("hubble-deep-field", SKIMAGE, "skimage/data/hubble_deep_field.jpg", "NASA, public domain"),
    Photo("coast", LIBJXL, "external/wesaturate/500px/cvo9xd_keong_macan_srgb8.png", "wesaturate.com, CC0"),
    Photo("tulips", LIBJXL, "external/wesaturate/500px/tmshre_riaphotographs_srgb8.png", "wesaturate.com, CC0"),
)
"""Photos the ``"test"`` split crops (fidelity evaluation): person, vehicle, night scene, tissue, sky, landscape, flowers."""

SPLIT_PHOTOS = {"train": CALIBRATION_PHOTOS, "test": EVALUATION_PHOTOS}


def crop_seed(seed: int, index: int) -> int:
    """The torch seed of crop ``index`` of a set drawn with ``seed`` (numpy's ``SeedSequence`` mixes the two)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


class PhotoCrops(Dataset):
    """``count`` seeded random crops of ``photos``, as ``(normalised image (C, H, W), NO_LABEL)``.

    Crop ``i`` comes from ``photos[i % len(photos)]`` with torch's generator seeded by :func:`crop_seed`
    inside ``torch.random.fork_rng``, so the caller's random state is left as it was.
    """

    has_labels = False

    def __init__(self, photos: list[Image.Image], count: int, transform: v2.Transform, seed: int = 0) -> None:
        self.photos, self.count, self.transform, self.seed = photos, count, transform, seed

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.count:
            raise IndexError(f"crop {index} of {self.count}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(crop_seed(self.seed, index))
            return self.transform(self.photos[index % len(self.photos)]), NO_LABEL


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
        scikit-image or libjxl-testdata missing (``make run`` / ``make test`` install them), or no photo readable.
        A photo that does not decode is left out with an ``UnreadableImageWarning``.
    """
    photos = [image for _, image in open_all_rgb(photo.file() for photo in SPLIT_PHOTOS[split])]
    if not photos:
        raise RankscopeError(f"none of the {NAME} of the {split} split could be read")
    return PhotoCrops(photos, count, crop_transform(cfg), seed)

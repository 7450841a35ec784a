"""Reading image files one by one: a corrupt, non-image or unsuitable file is named in a warning and skipped, not fatal."""
from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS

MODE_NAMES = {"L": "greyscale", "LA": "greyscale with alpha", "RGBA": "RGB with alpha", "P": "palette", "1": "black and white",
              "I;16": "16-bit greyscale", "I": "32-bit greyscale", "CMYK": "CMYK"}  # PIL modes, for messages


class UnreadableImageWarning(UserWarning):
    """A file that should hold an image does not decode; the message names it, and it was left out."""


class UnsuitableImageWarning(UserWarning):
    """A readable image that a data set cannot use as it is (not RGB, too small); the message names it and says
    why, and it was left out."""


def _skip(path: str | Path, err: Exception) -> None:
    reason = (str(err).splitlines() or [type(err).__name__])[0]
    warnings.warn(f"skipped {path}: not a readable image ({reason})", UnreadableImageWarning, stacklevel=3)


def skip_unsuitable(path: str | Path, reason: str) -> None:
    """Warn with an :class:`UnsuitableImageWarning` that the image at ``path`` is left out, and why."""
    warnings.warn(f"skipped {path}: {reason}", UnsuitableImageWarning, stacklevel=3)


def open_rgb(path: str | Path) -> Image.Image | None:
    """The image at ``path`` fully decoded and converted to RGB, or ``None`` after an :class:`UnreadableImageWarning`.

    Parameters
    ----------
    path : an image file any format Pillow reads (JPEG, PNG, PPM, ...); alpha is dropped, grey becomes RGB.
    """
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as err:  # UnidentifiedImageError is an OSError
        _skip(path, err)
        return None


def open_exact_rgb(path: str | Path) -> Image.Image | None:
    """The image at ``path`` fully decoded when it is 8-bit RGB, else ``None`` after a warning naming it.

    A file that does not decode gets an :class:`UnreadableImageWarning`; an image of another mode (greyscale,
    with alpha, palette, 16-bit) an :class:`UnsuitableImageWarning`: converting it would make colours the photo
    never had, or drop some it had, which a colour-exact evaluation (super-resolution) must not do.
    """
    try:
        with Image.open(path) as image:
            if image.mode != "RGB":
                skip_unsuitable(path, f"an image of mode {image.mode} ({MODE_NAMES.get(image.mode, 'not 8-bit RGB')}); "
                                      "only 8-bit RGB photos are used")
                return None
            image.load()
            return image.copy()
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        _skip(path, err)
        return None


def open_all_rgb(paths: Iterable[Path]) -> list[tuple[Path, Image.Image]]:
    """``(path, RGB image)`` of every readable file of ``paths``, in order; each unreadable one is warned about and left out."""
    return [(path, image) for path in paths if (image := open_rgb(path)) is not None]


def is_image_file(path: str) -> bool:
    """Whether ``path`` has an image extension and Pillow recognises its header (cheap: nothing is decoded).

    For :class:`torchvision.datasets.DatasetFolder`'s ``is_valid_file``: a file with an image extension that is
    not an image is named in an :class:`UnreadableImageWarning` and left out of the data set.
    """
    if not path.lower().endswith(IMG_EXTENSIONS):
        return False
    try:
        with Image.open(path):
            return True
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        _skip(path, err)
        return False

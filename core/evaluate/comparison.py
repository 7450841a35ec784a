"""A super-resolution model's image next to its compressed copy's: one crop of the HR photo, its bicubic upscale,
the dense and the compressed model's outputs as 8-bit pictures, where and how much they differ, and their PSNRs.

Both models run on the whole low-resolution image, on tiles where the photo's data set says so
(:func:`core.profile.tiles.tiled_forward`, exact: the tiles overlap by the receptive field), never on the crop
alone, which would change what the borders of the crop see; the crop is cut from the outputs. Every measure is taken on
outputs rounded to 8 bits, as a saved PNG holds them and as :mod:`core.task.super_resolution` scores them:

- the error map is the mean |compressed − dense| over R, G and B of each pixel, in 8-bit levels (0-255);
- the colour shift is the fidelity task's ``colour_shift``: the mean BT.601 (Cb, Cr) of the compressed image minus
  the dense one's, in 8-bit levels, and its length; of the crop, and of the whole photo with the border shaved
  (:class:`~core.task.super_resolution.SuperResolutionFidelityTally` itself, the number the Plan page averages);
- PSNRs are of the Y channel against the HR photo, in dB: of the crop (nothing shaved: the crop is the region
  compared), and of the whole photo with ``scale`` border pixels shaved
  (:class:`~core.task.super_resolution.SuperResolutionTally`, the task's headline).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from core.errors import RankscopeError
from core.profile.tiles import Tiling, tiled_forward
from core.task.images import luma, psnr, quantise, to_pil, ycbcr
from core.task.super_resolution import (
    BicubicUpscale,
    SuperResolutionFidelityTally,
    SuperResolutionTally,
    fidelity_name,
    task_name,
)

DEFAULT_SIDE = 128  # side in HR pixels of the default (centred) crop
PANELS = ("hr", "bicubic", "dense", "compressed")  # the pictures of an ImageComparison, in the order they are shown


class Crop(NamedTuple):
    """A box in HR pixels: ``top``, ``left`` corner and ``height``, ``width``."""

    top: int
    left: int
    height: int
    width: int


@dataclass(frozen=True)
class ImageComparison:
    """One crop of a photo upscaled four ways, and how the compressed model's differs from the dense one's.

    Attributes
    ----------
    crop : the box compared, in HR pixels, after :func:`fit_crop`.
    hr, bicubic, dense, compressed : the crop of the HR photo, of its bicubic upscale (the baseline) and of each
        model's output, (height, width, 3) uint8 RGB.
    error : (height, width) float64, mean |compressed − dense| over R, G, B of each pixel in 8-bit levels (0-255).
    chroma_shift : mean (ΔCb, ΔCr) over the crop, compressed minus dense, BT.601 in 8-bit levels.
    colour_shift : ‖chroma_shift‖, the fidelity task's ``colour_shift`` of the crop.
    psnr : Y-channel PSNR (dB) of the crop against the HR crop, by panel: ``"bicubic"``, ``"dense"``,
        ``"compressed"`` (:data:`~core.task.images.PSNR_CAP_DB` where identical).
    photo_colour_shift : the fidelity task's ``colour_shift`` of the whole photo (``scale`` border pixels shaved).
    photo_psnr : the super-resolution task's ``psnr`` of the whole photo (border shaved), by panel as ``psnr``.
    """

    crop: Crop
    hr: np.ndarray
    bicubic: np.ndarray
    dense: np.ndarray
    compressed: np.ndarray
    error: np.ndarray
    chroma_shift: tuple[float, float]
    colour_shift: float
    psnr: dict[str, float]
    photo_colour_shift: float
    photo_psnr: dict[str, float]

    def panel(self, name: str) -> np.ndarray:
        """The picture ``name`` of :data:`PANELS`."""
        return getattr(self, name)


def fit_crop(crop: Crop | tuple[int, int, int, int] | None, height: int, width: int) -> Crop:
    """``crop`` moved inside a ``height`` x ``width`` image and made no larger than it.

    ``None`` is the centred crop of :data:`DEFAULT_SIDE` pixels a side. A box reaching past an edge is moved back
    inside, keeping its size where the image is large enough, so a crop asked for at a corner stays that size.

    Raises
    ------
    RankscopeError
        A box with a side under one pixel.
    """
    if crop is None:
        side_h, side_w = min(DEFAULT_SIDE, height), min(DEFAULT_SIDE, width)
        return Crop((height - side_h) // 2, (width - side_w) // 2, side_h, side_w)
    top, left, h, w = (int(v) for v in crop)
    if h < 1 or w < 1:
        raise RankscopeError(f"a crop needs sides of at least one pixel, got {h}x{w} (height x width)")
    h, w = min(h, height), min(w, width)
    return Crop(min(max(top, 0), height - h), min(max(left, 0), width - w), h, w)


def upscale(model: nn.Module, lr: torch.Tensor, tiling: Tiling | None = None) -> torch.Tensor:
    """``model``'s output for one low-resolution image ``lr`` (3, h, w) in [0, 1]: (3, sh, sw) float32 on the CPU.

    The image runs whole, or on the ``(tile, margin)`` tiles of :func:`core.profile.tiles.tiled_forward` (a data
    set's ``tiling``), in inference mode on the device of the model's parameters (the CPU for none).
    """
    first = next(model.parameters(), None)
    x = lr[None].to(first.device if first is not None else lr.device)  # (1, 3, h, w)
    with torch.inference_mode():
        out = tiled_forward(model, x, *tiling) if tiling else model(x)  # (1, 3, sh, sw)
    return out[0].float().cpu()


def compare_images(original: nn.Module, compressed: nn.Module, lr: torch.Tensor, hr: torch.Tensor, scale: int,
                   crop: Crop | tuple[int, int, int, int] | None = None, *,
                   tiling: Tiling | None = None) -> ImageComparison:
    """The dense ``original`` and its ``compressed`` copy upscaling ``lr``, compared on ``crop`` of ``hr``.

    Parameters
    ----------
    original, compressed : x ``scale`` super-resolution models, RGB in [0, 1] in and out.
    lr, hr : the low-resolution input (3, h, w) and the HR photo it was downscaled from (3, scale·h, scale·w),
        in [0, 1] (an item of ``set5-like``).
    scale : the models' scale; the bicubic baseline upscales by it and the whole-photo measures shave it.
    crop : (top, left, height, width) in HR pixels, fitted to the photo by :func:`fit_crop`; ``None``: centred.
    tiling : how to cut a large ``lr`` for the models (:func:`upscale`; ``None``: whole).

    Returns
    -------
    ImageComparison
        See :func:`compare_outputs`.
    """
    return compare_outputs(hr, upscale(BicubicUpscale(scale), lr), upscale(original, lr, tiling),
                           upscale(compressed, lr, tiling), scale, crop)


def compare_outputs(hr: torch.Tensor, bicubic: torch.Tensor, dense: torch.Tensor, compressed: torch.Tensor, scale: int,
                    crop: Crop | tuple[int, int, int, int] | None = None) -> ImageComparison:
    """:func:`compare_images` from the upscaled images themselves, each (3, H, W) in [0, 1] (a caller caching the
    models' outputs re-crops them without running a model).

    Raises
    ------
    RankscopeError
        Images that are not RGB of the HR photo's shape (a model of another scale), or a photo too small for the
        whole-photo measures (under 11 + 2·``scale`` pixels a side: the tasks' SSIM window and the shaved border).
    """
    if hr.ndim != 3 or hr.shape[0] != 3:
        raise RankscopeError(f"the HR photo must be an RGB image (3, height, width), not {tuple(hr.shape)}")
    images = {"hr": hr, "bicubic": bicubic, "dense": dense, "compressed": compressed}
    for name, image in images.items():
        if image.shape != hr.shape:
            raise RankscopeError(f"the {name} image is {tuple(image.shape)}, not the HR photo's {tuple(hr.shape)} "
                                 f"(a x{scale} model upscales the photo's low-resolution input to it)")
    rounded = {name: quantise(image.detach().float().cpu()) for name, image in images.items()}  # (3, H, W) 8-bit levels
    box = fit_crop(crop, hr.shape[1], hr.shape[2])
    rows, columns = slice(box.top, box.top + box.height), slice(box.left, box.left + box.width)
    cut = {name: image[:, rows, columns] for name, image in rounded.items()}  # (3, h, w)
    chroma = _mean_chroma_shift(cut["compressed"], cut["dense"])
    y_hr = luma(cut["hr"])[None]  # (1, h, w)
    crop_psnr = {name: float(psnr(luma(cut[name])[None], y_hr)[0]) for name in PANELS[1:]}
    photo_psnr = {}
    for name in PANELS[1:]:
        tally = SuperResolutionTally(scale, task_name(scale))
        tally.add(rounded[name][None], rounded["hr"][None])
        photo_psnr[name] = tally.result()["psnr"]
    fidelity = SuperResolutionFidelityTally(scale, fidelity_name(scale))
    fidelity.add(rounded["compressed"][None], None, rounded["dense"][None])
    pictures = {name: np.asarray(to_pil(image)) for name, image in cut.items()}  # (h, w, 3) uint8
    error = np.abs(pictures["compressed"].astype(np.int16) - pictures["dense"]).mean(axis=-1)  # (h, w), 8-bit levels
    return ImageComparison(
        crop=box, **pictures, error=error,
        chroma_shift=chroma, colour_shift=float(np.hypot(*chroma)), psnr=crop_psnr,
        photo_colour_shift=fidelity.result()["colour_shift"], photo_psnr=photo_psnr)


def _mean_chroma_shift(images: torch.Tensor, references: torch.Tensor) -> tuple[float, float]:
    """Mean (Cb, Cr) of ``images`` minus ``references``' (both (3, h, w), 8-bit already), BT.601 in 8-bit levels."""
    shift = (ycbcr(images) - ycbcr(references)).mean(dim=(-2, -1))  # (3,): Y, Cb, Cr
    return float(shift[1]), float(shift[2])

"""Image measures of super-resolution as the literature computes them: 8-bit outputs, MATLAB's BT.601 YCbCr, PSNR
and SSIM on the Y channel with a border shaved, and PIL's bicubic resampling (the degradation and the baseline).

Images are float tensors (..., 3, H, W) with RGB in [0, 1]. :func:`quantise` rounds a model's output to the 8-bit
levels a saved PNG would hold, as the published PSNRs are measured. :func:`ycbcr` is MATLAB's ``rgb2ycbcr`` on
[0, 1] input, scaled to 8-bit levels: Y in [16, 235], Cb and Cr in [16, 240], not rounded.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

LEVELS = 255.0  # 8-bit peak: PSNR and SSIM are computed on Y in 8-bit levels
PSNR_CAP_DB = 100.0  # the PSNR of identical images (infinite), so that JSON can hold it
# ITU-R BT.601 RGB [0, 1] -> YCbCr in 8-bit levels, as MATLAB's rgb2ycbcr: rows Y, Cb, Cr
YCBCR_MATRIX = ((65.481, 128.553, 24.966), (-37.797, -74.203, 112.0), (112.0, -93.786, -18.214))
YCBCR_OFFSET = (16.0, 128.0, 128.0)


def quantise(images: torch.Tensor) -> torch.Tensor:
    """``images`` clamped to [0, 1] and rounded to the nearest of the 256 levels of an 8-bit file."""
    return torch.round(images.clamp(0, 1) * LEVELS) / LEVELS


def ycbcr(images: torch.Tensor) -> torch.Tensor:
    """BT.601 YCbCr of RGB ``images`` (..., 3, H, W) in [0, 1], in 8-bit levels (Y 16-235, Cb/Cr 16-240), float64."""
    matrix = torch.tensor(YCBCR_MATRIX, dtype=torch.float64, device=images.device)
    offset = torch.tensor(YCBCR_OFFSET, dtype=torch.float64, device=images.device).view(3, 1, 1)
    return torch.einsum("ij,...jhw->...ihw", matrix, images.double()) + offset


def luma(images: torch.Tensor) -> torch.Tensor:
    """The Y channel of :func:`ycbcr`: (..., H, W) in 8-bit levels."""
    return ycbcr(images)[..., 0, :, :]


def shave(images: torch.Tensor, border: int) -> torch.Tensor:
    """``images`` (..., H, W) without ``border`` pixels on each side (what SR evaluation leaves out)."""
    return images[..., border:images.shape[-2] - border, border:images.shape[-1] - border] if border else images


def psnr(images: torch.Tensor, references: torch.Tensor, peak: float = LEVELS) -> torch.Tensor:
    """Per-image PSNR in dB of ``images`` against ``references``, both (B, H, W) or (B, C, H, W): ``10 log10(peak² / MSE)``,
    :data:`PSNR_CAP_DB` where they are identical. Returns (B,) float64."""
    mse = (images.double() - references.double()).square().flatten(1).mean(1)  # (B,)
    db = 10 * torch.log10(peak ** 2 / mse)
    return torch.where(mse > 0, db, torch.full_like(db, PSNR_CAP_DB)).clamp(max=PSNR_CAP_DB)


def ssim(images: torch.Tensor, references: torch.Tensor) -> list[float]:
    """Per-image SSIM of (B, H, W) ``images`` against ``references`` in 8-bit levels: scikit-image's
    ``structural_similarity`` with the settings of Wang et al. (2004) and MATLAB's ``ssim`` (11x11 Gaussian window,
    sigma 1.5, K1 0.01, K2 0.03, population covariance, data range 255)."""
    from skimage.metrics import structural_similarity  # noqa: PLC0415 - scikit-image is slow to import

    a, b = images.detach().double().cpu().numpy(), references.detach().double().cpu().numpy()
    return [float(structural_similarity(x, y, data_range=LEVELS, gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False)) for x, y in zip(a, b)]


def to_pil(image: torch.Tensor) -> Image.Image:
    """An RGB (3, H, W) tensor in [0, 1] as an 8-bit PIL image (rounded)."""
    levels = quantise(image.detach().float().cpu()) * LEVELS
    return Image.fromarray(levels.round().to(torch.uint8).permute(1, 2, 0).numpy(), mode="RGB")


def from_pil(image: Image.Image) -> torch.Tensor:
    """An 8-bit RGB PIL image as a float (3, H, W) tensor in [0, 1]."""
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float() / LEVELS


def bicubic_resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``image`` resized to ``size`` = (width, height) by PIL's bicubic filter (``Image.resize(BICUBIC)``: a = -0.5,
    antialiased when shrinking), 8-bit in and out. The degradation of the SR data sets and the bicubic baseline;
    with it the converted SRMD and waifu2x reproduce their published PSNRs (torch's antialiased bicubic does not:
    its a = -0.75 gives other low-resolution images)."""
    return image.resize(size, Image.Resampling.BICUBIC)


def downscale(hr: Image.Image, scale: int) -> Image.Image:
    """The low-resolution input of an HR image whose sides are multiples of ``scale``: :func:`bicubic_resize` by 1/scale."""
    width, height = hr.size
    return bicubic_resize(hr, (width // scale, height // scale))


def mod_crop(image: Image.Image, scale: int) -> Image.Image:
    """``image`` cropped at the right and bottom to sides that are multiples of ``scale`` (the SR literature's modcrop)."""
    width, height = image.size
    return image.crop((0, 0, width - width % scale, height - height % scale))


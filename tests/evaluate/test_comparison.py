"""compare_images: the four crops, the error map, the colour shift and the PSNRs of a dense and a compressed SR model."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from core.errors import RankscopeError
from core.evaluate.comparison import DEFAULT_SIDE, Crop, compare_images, compare_outputs, fit_crop, upscale
from core.task import BicubicUpscale
from core.task.images import YCBCR_MATRIX, downscale, from_pil, to_pil

BLUE = torch.tensor([0.0, 0.0, 10.0]).view(3, 1, 1)  # +10 8-bit levels of blue


class Shifted(nn.Module):
    """Nearest-neighbour x2, then ``shift`` (RGB, 8-bit levels) added: on 8-bit inputs, 8-bit outputs."""

    def __init__(self, shift: torch.Tensor | None = None) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.register_buffer("shift", torch.zeros(3, 1, 1) if shift is None else shift / 255)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x) + self.shift


class Fixed(nn.Module):
    """Whatever the input, ``image`` (3, H, W) shifted by ``levels`` 8-bit levels in R, G and B."""

    def __init__(self, image: torch.Tensor, levels: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("image", image + levels / 255)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.image[None].expand(len(x), -1, -1, -1)


@pytest.fixture(scope="module")
def photo() -> tuple[torch.Tensor, torch.Tensor]:
    """An (LR 20x24, HR 40x48) pair of a smooth 8-bit image in [0.2, 0.7] (no shift above clips), as set5-like makes it."""
    gen = torch.Generator().manual_seed(0)
    smooth = nn.functional.interpolate(torch.rand(1, 3, 5, 6, generator=gen), (40, 48), mode="bilinear")[0]
    hr = to_pil(0.2 + 0.5 * smooth)
    return from_pil(downscale(hr, 2)), from_pil(hr)


def test_identical_models_differ_nowhere(photo):
    lr, hr = photo
    result = compare_images(Shifted(), Shifted(), lr, hr, 2)
    assert result.crop == Crop(0, 0, 40, 48)  # the default crop, larger than the photo, is the photo
    assert result.error.shape == (40, 48) and not result.error.any()
    assert result.chroma_shift == (0.0, 0.0) and result.colour_shift == 0.0 and result.photo_colour_shift == 0.0
    assert result.psnr["dense"] == result.psnr["compressed"] < 100
    assert np.array_equal(result.dense, result.compressed)
    assert result.dense.dtype == np.uint8 and result.dense.shape == (40, 48, 3)


def test_a_constant_blue_shift_is_the_fidelity_tasks_colour_shift(photo):
    lr, hr = photo
    result = compare_images(Shifted(), Shifted(BLUE), lr, hr, 2, crop=(4, 6, 16, 20))
    cb, cr = YCBCR_MATRIX[1][2] * 10 / 255, YCBCR_MATRIX[2][2] * 10 / 255  # 112 and -18.214 per unit of blue
    assert result.chroma_shift == pytest.approx((cb, cr), abs=1e-6)  # (4.392, -0.714) levels
    assert result.colour_shift == pytest.approx(math.hypot(cb, cr), abs=1e-6) == pytest.approx(4.4499, abs=1e-4)
    assert result.photo_colour_shift == pytest.approx(result.colour_shift, abs=1e-6)  # the same shift everywhere
    assert result.error == pytest.approx(np.full((16, 20), 10 / 3))  # mean |Δ| over R, G, B: 10 levels in one of three
    assert np.array_equal(result.compressed[..., 2].astype(int) - result.dense[..., 2], np.full((16, 20), 10))


def test_psnr_against_hr_of_a_known_luma_error(photo):
    lr, hr = photo
    result = compare_images(Fixed(hr), Fixed(hr, 1.0), lr, hr, 2, crop=(10, 10, 8, 8))
    assert result.psnr["dense"] == result.photo_psnr["dense"] == 100.0  # identical to HR: the cap
    luma_error = sum(YCBCR_MATRIX[0]) / 255  # +1 level in R, G and B is +219/255 levels of Y everywhere
    assert result.psnr["compressed"] == pytest.approx(20 * math.log10(255 / luma_error)) == pytest.approx(49.45, abs=0.01)
    assert result.photo_psnr["compressed"] == pytest.approx(result.psnr["compressed"])
    assert result.error == pytest.approx(np.ones((8, 8)))


def test_bicubic_and_hr_panels_are_the_baseline_and_the_photo_cropped(photo):
    lr, hr = photo
    result = compare_images(Shifted(), Shifted(), lr, hr, 2, crop=(8, 12, 20, 24))
    bicubic = np.asarray(to_pil(BicubicUpscale(2)(lr[None])[0]))[8:28, 12:36]
    assert np.array_equal(result.bicubic, bicubic)
    assert np.array_equal(result.hr, np.asarray(to_pil(hr))[8:28, 12:36])
    assert np.array_equal(result.panel("hr"), result.hr)
    assert torch.equal(from_pil(to_pil(hr)), hr)  # the HR photo is 8-bit already: the panel is the photo


def test_a_crop_is_moved_inside_the_photo_and_no_larger_than_it():
    assert fit_crop((-5, 40, 16, 16), 40, 48) == Crop(0, 32, 16, 16)  # past the top and the right edge
    assert fit_crop((30, 0, 16, 100), 40, 48) == Crop(24, 0, 16, 48)
    assert fit_crop((3, 4, 100, 100), 40, 48) == Crop(0, 0, 40, 48)
    assert fit_crop(None, 300, 200) == Crop(86, 36, DEFAULT_SIDE, DEFAULT_SIDE)  # centred
    with pytest.raises(RankscopeError, match="at least one pixel, got 0x4"):
        fit_crop((0, 0, 0, 4), 40, 48)


def test_outputs_of_another_scale_are_refused(photo):
    lr, hr = photo
    x4 = nn.Upsample(scale_factor=4, mode="nearest")
    with pytest.raises(RankscopeError, match=r"the compressed image is \(3, 80, 96\), not the HR photo's \(3, 40, 48\)"):
        compare_images(Shifted(), x4, lr, hr, 2)
    with pytest.raises(RankscopeError, match="RGB image"):
        compare_outputs(hr[0], hr, hr, hr, 2)


def test_upscale_runs_the_whole_image_or_its_tiles_without_gradients(photo):
    lr, _ = photo
    conv = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2))  # receptive-field radius 1
    whole = upscale(conv, lr)
    assert whole.shape == (3, 40, 48) and not whole.requires_grad and whole.device.type == "cpu"
    assert torch.allclose(upscale(conv, lr, (8, 1)), whole, atol=1e-6)  # 3 x 3 tiles overlapping by the radius

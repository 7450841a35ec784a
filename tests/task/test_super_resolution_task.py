"""The super-resolution tasks against hand-computed cases: BT.601 Y, PSNR, SSIM, shave, colour shift, L1, baseline."""
from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from core.errors import RankscopeError
from core.task import BicubicUpscale, get_task, list_tasks
from core.task.images import PSNR_CAP_DB, from_pil, to_pil, ycbcr

SR, FIDELITY = get_task("super-resolution-x2"), get_task("super-resolution-fidelity-x2")
Y_SUM = 65.481 + 128.553 + 24.966  # = 219: Y levels per unit of grey


def grey(level: float, size: int = 32, batch: int = 1) -> torch.Tensor:
    """A (batch, 3, size, size) image of one 8-bit grey ``level``."""
    return torch.full((batch, 3, size, size), level / 255)


def scores(task, outputs, targets=None, reference=None) -> dict[str, float]:
    tally = task.tally()
    tally.add(outputs, targets if targets is not None else outputs, reference)
    return tally.result()


def test_the_tasks_are_registered_per_scale():
    for scale in (2, 3, 4):
        assert {f"super-resolution-x{scale}", f"super-resolution-fidelity-x{scale}"} <= set(list_tasks())
        assert get_task(f"super-resolution-x{scale}").scale == scale
    assert [m.name for m in SR.metrics] == ["psnr", "ssim", "l1"] and (SR.headline, SR.loss_metric) == ("psnr", "l1")
    assert [m.name for m in FIDELITY.metrics] == ["psnr_to_original", "colour_shift", "brightness_shift", "l1_to_original"]
    assert (SR.needs_reference, FIDELITY.needs_reference) == (False, True) and SR.fidelity == FIDELITY.name


def test_ycbcr_is_matlabs_bt601_in_8_bit_levels():
    colours = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]).view(3, 3, 1, 1)  # white, black, red
    expected = torch.tensor([[235, 128, 128], [16, 128, 128], [81.481, 90.203, 240]], dtype=torch.float64)
    assert torch.allclose(ycbcr(colours).flatten(1), expected)


@pytest.mark.parametrize("levels", [1, 3, 10])
def test_psnr_of_a_uniform_error_is_twenty_log_of_peak_over_the_y_error(levels):
    hr = grey(100)
    y_error = levels * Y_SUM / 255  # every pixel's Y moves by this many levels
    assert scores(SR, hr + levels / 255, hr)["psnr"] == pytest.approx(20 * math.log10(255 / y_error), abs=1e-6)


def test_the_border_of_scale_pixels_is_shaved():
    hr = grey(100)
    out = hr.clone()
    out[..., :2, :] = out[..., -2:, :] = out[..., :, :2] = out[..., :, -2:] = 1.0  # only the 2 px border differs
    result = scores(SR, out, hr)
    assert result["psnr"] == PSNR_CAP_DB and result["ssim"] == pytest.approx(1.0)
    assert scores(get_task("super-resolution-x4"), out, hr)["psnr"] == PSNR_CAP_DB
    out[..., 2, 2] = 0.0  # one pixel inside
    assert scores(SR, out, hr)["psnr"] < 60


def test_ssim_of_two_flat_images_is_the_luminance_term():
    y1, y2 = 16 + Y_SUM * 100 / 255, 16 + Y_SUM * 150 / 255
    c1 = (0.01 * 255) ** 2
    assert scores(SR, grey(150), grey(100))["ssim"] == pytest.approx((2 * y1 * y2 + c1) / (y1 ** 2 + y2 ** 2 + c1), rel=1e-6)


def test_outputs_are_rounded_to_8_bits_and_clamped_before_scoring():
    hr = grey(100)
    assert scores(SR, hr + 0.4 / 255, hr)["psnr"] == PSNR_CAP_DB  # rounds back to level 100
    assert scores(SR, torch.ones_like(hr) * 3, torch.ones_like(hr))["psnr"] == PSNR_CAP_DB  # clamped to white


def test_metrics_are_means_over_images_and_l1_is_the_loss():
    hr = grey(100, batch=2)
    out = hr.clone()
    out[1] += 10 / 255
    result = scores(SR, out, hr)
    assert result["psnr"] == pytest.approx((PSNR_CAP_DB + 20 * math.log10(255 / (10 * Y_SUM / 255))) / 2)
    assert result["l1"] == pytest.approx(10 / 255 / 2)
    raw = (hr + 0.1).requires_grad_()
    loss = SR.loss(raw, hr)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(0.1) and raw.grad is not None


def test_colour_and_brightness_shift_of_a_blue_tint():
    dense = grey(100)
    tinted = dense.clone()
    tinted[:, 2] += 10 / 255  # blue up 10 levels: Y +24.966, Cb +112, Cr -18.214 per unit
    result = scores(FIDELITY, tinted, reference=dense)
    d = 10 / 255
    assert result["colour_shift"] == pytest.approx(d * math.hypot(112.0, 18.214))
    assert result["brightness_shift"] == pytest.approx(d * 24.966)
    assert result["psnr_to_original"] == pytest.approx(20 * math.log10(255 / (d * 24.966)))
    assert result["l1_to_original"] == pytest.approx(d / 3)
    assert scores(FIDELITY, dense, reference=dense) == {"psnr_to_original": PSNR_CAP_DB, "colour_shift": 0.0,
                                                        "brightness_shift": 0.0, "l1_to_original": 0.0}


def test_bicubic_baseline_is_pils_bicubic_upscale():
    gen = torch.Generator().manual_seed(0)
    lr = torch.randint(0, 256, (2, 3, 12, 9), generator=gen).float() / 255
    up = BicubicUpscale(2)(lr)
    assert up.shape == (2, 3, 24, 18)
    expected = from_pil(to_pil(lr[1]).resize((18, 24), Image.Resampling.BICUBIC))
    assert torch.equal(up[1], expected)
    assert scores(SR, BicubicUpscale(2)(grey(100, 16)), grey(100))["psnr"] == PSNR_CAP_DB  # a flat image stays flat


@pytest.mark.parametrize(("outputs", "targets", "message"), [
    (torch.zeros(2, 10), torch.zeros(2), r"scores RGB images \(batch, 3, height, width\), but the outputs are \(2, 10\)"),
    (grey(100), torch.tensor([-1]), r"with high-resolution targets of the same shape, but got shape \(1,\)"),
    (grey(100, 32), grey(100, 64), r"but got shape \(1, 3, 64, 64\) \(a x2 model"),
    (grey(100, 12), grey(100, 12), "shaves 2 border pixels and needs 11 left"),
])
def test_what_cannot_be_scored_is_refused(outputs, targets, message):
    with pytest.raises(RankscopeError, match=message):
        SR.tally().add(outputs, targets)


def test_fidelity_needs_the_original_models_images():
    with pytest.raises(RankscopeError, match="the original model's outputs of the same shape, but got none"):
        FIDELITY.tally().add(grey(100), grey(100), None)
    with pytest.raises(RankscopeError, match="no images to score"):
        FIDELITY.tally().result()


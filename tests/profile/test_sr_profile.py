"""Profiling a super-resolution model: its data set's tasks, the bicubic row, the fidelity keys, and the old keys kept."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import Subset, TensorDataset

from core.data.sr_photos import SRImages
from core.models.cfg import ModelCfg
from core.profile import evaluate_tasks, profile_model
from core.profile.report import QUALITY_KEYS, profile_tasks
from core.task import BicubicUpscale
from core.task.images import to_pil

CFG = ModelCfg("tiny-sr", (3, 16, 16), 0, scale=2, receptive_field=3, mean=(0.0,) * 3, std=(1.0,) * 3)
SR_KEYS = {"psnr", "ssim", "l1", "bicubic_psnr", "bicubic_ssim", "psnr_to_original", "colour_shift", "brightness_shift"}


def tiny_sr() -> nn.Module:
    """A x2 net that starts as nearest-neighbour upscaling: one conv copying RGB to the four sub-pixels, a shuffle."""
    conv = nn.Conv2d(3, 12, 3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        for c in range(3):
            conv.weight[4 * c:4 * c + 4, c, 1, 1] = 1.0
    return nn.Sequential(conv, nn.PixelShuffle(2)).eval()


@pytest.fixture(scope="module")
def photos() -> SRImages:
    """Two HR images of different sizes, as the set5-like loader makes them."""
    gen = torch.Generator().manual_seed(0)
    smooth = [nn.functional.interpolate(torch.rand(1, 3, h // 8, w // 8, generator=gen), (h, w), mode="bilinear")[0]
              for h, w in ((48, 64), (40, 40))]
    return SRImages([(f"photo{i}", to_pil(x)) for i, x in enumerate(smooth)], scale=2, margin=25)


def test_the_data_sets_task_and_its_fidelity_counterpart_are_profiled(photos):
    tasks = profile_tasks(Subset(photos, [0, 1]))
    assert {k: t.name for k, t in tasks.items()} == {"sr": "super-resolution-x2", "sr-fidelity": "super-resolution-fidelity-x2"}
    labelled = TensorDataset(torch.zeros(2, 3, 4, 4), torch.tensor([0, 1]))
    assert list(profile_tasks(labelled)) == ["classification", "fidelity"]


def test_every_quality_key_comes_from_a_role_of_profile_tasks():
    roles = {role for role, _ in QUALITY_KEYS.values()}
    assert roles == {"classification", "fidelity", "sr", "sr-fidelity", "bicubic", "lm"}  # lm: tests/task/test_language.py
    lm_keys = {"perplexity", "nll", "token_accuracy"}
    assert SR_KEYS | lm_keys | {"accuracy", "top5", "loss", "agreement", "top5_overlap", "kl", "relative_error"} == set(QUALITY_KEYS)


def test_images_of_different_sizes_are_scored_one_by_one(photos):
    model = tiny_sr()
    sr, fidelity = evaluate_tasks(model, photos, list(profile_tasks(photos).values()), reference=BicubicUpscale(2),
                                  batch_size=64)
    assert sr.samples == fidelity.samples == 2
    assert 15 < sr["psnr"] < 60 and 0 < sr["ssim"] < 1 and fidelity["psnr_to_original"] < 100


@pytest.mark.slow  # memory measured in a spawned child
def test_profile_reports_psnr_the_bicubic_row_and_fidelity_to_the_dense_model(photos):
    dense = tiny_sr()
    tinted = copy.deepcopy(dense)
    with torch.no_grad():
        tinted[0].bias[8:] += 4 / 255  # blue sub-pixels up 4 levels
    row = profile_model(tinted, CFG, dataset=photos, reference=dense, threads=1, repeats=3).to_dict()
    assert row["samples"] == 2 and row["psnr"] < 100 and row["bicubic_psnr"] > row["psnr"]  # smooth images: bicubic wins
    assert row["colour_shift"] == pytest.approx(4 / 255 * (112.0 ** 2 + 18.214 ** 2) ** 0.5, rel=0.05)
    assert row["brightness_shift"] == pytest.approx(4 / 255 * 24.966, rel=0.05)
    assert all(row[k] is None for k in ("accuracy", "top5", "loss", "agreement", "top5_overlap", "kl", "relative_error"))
    same = profile_model(dense, CFG, dataset=photos, threads=1, repeats=3).to_dict()
    assert (same["psnr_to_original"], same["colour_shift"], same["brightness_shift"]) == (100.0, 0.0, 0.0)
    assert same["bicubic_psnr"] == row["bicubic_psnr"] and same["psnr"] > row["psnr"]

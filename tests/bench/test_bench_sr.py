"""``rankscope bench sr``: the plans it compares keep the FLOPs they say, and the command prints its rows and last line."""
from __future__ import annotations

import re

import pytest
import torch

from core.bench.super_resolution import SIZE, SRRow, Quality, covered, headline, plans
from core.cli import main
from core.models import create_model
from core.plan import apply_plan
from core.profile import count_flops


@pytest.fixture(scope="module")
def srmd():
    return create_model("srmd-x2")


@pytest.mark.slow
def test_plans_cover_the_wide_convs_and_keep_the_fraction_of_the_whole_models_flops(srmd):
    model, cfg = srmd
    assert covered(model) == [f"body.{i}" for i in range(2, 22, 2)]  # the ten 128 -> 128 convs, not body.0 / body.22
    x = torch.zeros(1, 3, SIZE, SIZE)
    dense = count_flops(model, x).total
    calibration = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    found = plans(model, cfg, "srmd-x2", 0.5, ("tucker2", "svd", "aa_svd", "spectrum"), calibration)
    assert list(found) == ["tucker2 50%", "svd 50%", "aa_svd 50%", "spectrum 50%"]
    for label, plan in found.items():
        assert set(plan.layers) <= set(covered(model)), label
        kept = count_flops(apply_plan(model, plan, calibration=calibration)[0], x).total / dense
        assert kept == pytest.approx(0.5, abs=0.05), label  # half a rank step: 8 ranks of Tucker-2 near 77 are 9 % of a layer


def test_headline_names_the_best_recovered_half_flops_plan():
    q = Quality(psnr=37.0, ssim=0.96, colour_shift=0.0, psnr_to_dense=100.0)
    rows = [SRRow("srmd-x2", "svd 50%", 0.5, 1, 100.0, 50.0, q, Quality(35.0, 0.9, 0.1, 40.0)),
            SRRow("srmd-x2", "aa_svd 50%", 0.5, 1, 100.0, 62.5, q, Quality(36.5, 0.95, 0.1, 45.0)),
            SRRow("srmd-x2", "aa_svd 25%", 0.25, 1, 100.0, 30.0, q, Quality(36.9, 0.95, 0.1, 45.0))]
    assert headline(q, rows, 2) == ("sr: srmd-x2 at 50 % FLOPs after recovery: aa_svd 0.50 dB below dense, 1.60x faster "
                                    "(batch 1, 256x256, 2 threads)")


@pytest.mark.slow
def test_bench_sr_prints_the_dense_row_and_each_plan_before_and_after_recovery(capsys):
    assert main(["bench", "sr", "--models", "waifu2x-photo-x2", "--methods", "aa_svd", "--fractions", "0.5",
                 "--recover", "0.5", "--steps", "2", "--repeats", "1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert re.match(r"waifu2x-photo-x2 +dense +FLOPs [\d.]+ G params +552,483 \| +37\.33 dB", out[0])
    rows = [line for line in out if line.startswith("waifu2x-photo-x2 ") and "->" in line]
    assert [r.split("FLOPs")[0].split(maxsplit=1)[1].strip() for r in rows] == ["aa_svd 50%"]  # no upsampler row
    assert all("| recovered" in r and "shift" in r for r in rows)

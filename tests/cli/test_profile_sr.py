"""`rankscope profile srmd-x2 --json`: PSNR and SSIM against the HR photos, the bicubic row, and fidelity under a plan."""
from __future__ import annotations

import json

import pytest

from core.cli import main

PLAN = """schema: 1
model: srmd-x2
layers:
  body.10: {method: tucker2, ranks: [32, 32]}
"""


def profile(capsys, *args: str) -> dict:
    assert main(["profile", "srmd-x2", "--json", "--samples", "1", "--threads", "1", *args]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.slow  # SRMD over a whole 500 x 500 photo, twice with the plan; latency and a memory child each time
def test_profile_prints_sr_quality_and_a_plan_moves_it(capsys, tmp_path):
    dense = profile(capsys)
    assert (dense["samples"], dense["params"], dense["accuracy"], dense["agreement"]) == (1, 1_510_540, None, None)
    assert dense["psnr"] > dense["bicubic_psnr"] > 20 and dense["ssim"] > dense["bicubic_ssim"] > 0.5
    assert (dense["psnr_to_original"], dense["colour_shift"], dense["brightness_shift"]) == (100.0, 0.0, 0.0)
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    compressed = profile(capsys, "--plan", str(plan))
    assert compressed["params"] < dense["params"] and compressed["bicubic_psnr"] == dense["bicubic_psnr"]
    assert compressed["psnr"] < dense["psnr"] and compressed["psnr_to_original"] < 100
    assert compressed["colour_shift"] > 0 and compressed["brightness_shift"] > 0

"""``rankscope bench speed`` on the shipped model, few calls: the table, the plans' FLOPs and the last line."""
from __future__ import annotations

import re

import pytest

from core.cli import main

pytestmark = pytest.mark.slow  # benchmarks: each runs the real measurement end to end


def test_bench_speed_prints_a_row_per_setting_and_the_headline(tmp_path, capsys):
    assert main(["bench", "speed", "--models", "fmnist-resnet", "--repeats", "2", "--samples", "16", "--batch", "2",
                 "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    rows = [line.split() for line in out if line.startswith("fmnist-resnet ")]
    assert [(r[1], r[2], r[3]) for r in rows] == [(rt, b, t) for rt in ("torch", "onnxruntime")
                                                  for b in ("1", "2") for t in ("1", "2")]
    for r in rows:
        flops, speed, realised = float(r[4]), float(r[-2].rstrip("x")), float(r[-1])
        assert 0 < flops < 1 and realised == pytest.approx(speed * flops, abs=0.02)
        if flops > 0.5:  # ranks in multiples of 16 on 16-64 channels: 50 % may be out of reach, and it is said
            assert any(line.strip().startswith(f"fmnist-resnet {r[1]}: no latency target gives 0.5") for line in out)
    assert re.fullmatch(r"speed: realised/ideal = \d+\.\d\d \(median over models at 50% FLOPs, onnxruntime, batch 1, "
                        r"1 thread\)", out[-1])
    assert list(tmp_path.glob("*.json"))  # the layer timings were kept

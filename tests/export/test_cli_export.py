"""`rankscope export`: one line on success, exit code 2 for a bad format or destination before any work."""
from __future__ import annotations

import re

import pytest

from core.cli import main
from core.cli.export import verification_inputs
from core.models.cfg import ModelCfg
from core.paths import ASSETS


def last_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("args, message", [
    (["--format", "tflite", "--out", "{tmp}/m.tflite"], "unknown export format 'tflite'; use one of onnx, torchscript, pt2"),
    (["--format", "onnx", "--out", "/dev/null/m.onnx"], "/dev/null is not a writable folder"),
    (["--format", "onnx", "--out", "{tmp}"], "is a folder"),
])
def test_bad_format_or_destination_exits_2_before_loading_the_model(tmp_path, capsys, args, message):
    argv = ["export", "no-such-model"] + [a.format(tmp=tmp_path) for a in args]  # the model is never loaded
    assert main(argv) == 2
    line = last_error_line(capsys)
    assert line.startswith("rankscope: error: ") and re.search(message, line), line
    assert list(tmp_path.iterdir()) == []


def test_model_without_data_is_checked_on_seeded_random_inputs():
    example, inputs, source = verification_inputs(ModelCfg("m", (3, 4, 4), 10), "", batch=3)
    assert (tuple(example.shape), tuple(inputs.shape), source) == ((3, 3, 4, 4), (9, 3, 4, 4), "random")
    assert (inputs[:3] == example).all()


@pytest.mark.slow  # loads fmnist-resnet and Fashion-MNIST, applies the shipped tucker2 plan, exports and checks
def test_export_of_a_compressed_shipped_model_prints_one_line(tmp_path, capsys):
    out = tmp_path / "resnet.pt"
    argv = ["export", "fmnist-resnet", "--plan", str(ASSETS / "plans" / "fmnist-resnet-tucker2-half.yaml"), "--format",
            "torchscript", "--out", str(out), "--batch", "2"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"torchscript {out} ")
    assert "on 8 fashion-mnist inputs" in lines[0] and "9 BatchNorms folded, 0 left" in lines[0]
    assert out.stat().st_size > 0

"""Bad plan input on the command line: one line on stderr, exit code 2, nothing written."""
from __future__ import annotations

import pytest

from core.cli import main


def _error(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    assert "Traceback" not in "\n".join(lines)
    return lines[-1]


@pytest.mark.parametrize(
    "content,pattern",
    [
        (b"model: fmnist-resnet\nlayers: {fc: {method: svd, rank: 4}}\n\xff", r"not UTF-8 text \(byte 58\)"),
        (b"model: fmnist-resnet\nlayers: " + b"[" * 1000 + b"\n", r"nested too deeply to be a plan"),
        (b"model: fmnist-resnet\nlayers: {fc: {method: svd, rank: 4, density: 0.3}}\n", r"fc: unknown keys density"),
        (b"model: fmnist-vit\nlayers: {blocks.0.attn.qkv: {method: svd, rank: 4}}\n",
         r"plan was made for fmnist-vit, this model is fmnist-resnet: blocks\.0\.attn\.qkv: no such module"),
    ],
)
def test_bad_plan_files_are_one_line_and_exit_2(tmp_path, capsys, content, pattern):
    plan = tmp_path / "plan.yaml"
    plan.write_bytes(content)
    assert main(["apply", "fmnist-resnet", "--plan", str(plan), "--out", str(tmp_path / "out")]) == 2
    import re

    assert re.search(pattern, _error(capsys))
    assert not (tmp_path / "out").exists()


def test_a_plan_for_another_model_whose_paths_fit_applies_with_a_warning_naming_both(tmp_path, capsys):
    plan = tmp_path / "plan.yaml"
    plan.write_text("model: fmnist-resnet-integral\nlayers: {fc: {method: svd, rank: 4}}\n")
    assert main(["apply", "fmnist-resnet", "--plan", str(plan), "--out", str(tmp_path / "out")]) == 0
    assert "warning: plan was made for fmnist-resnet-integral, this model is fmnist-resnet" in capsys.readouterr().err
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_apply_checks_out_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    missing_plan = tmp_path / "never-read.yaml"  # the --out check comes first, so this is never looked at
    assert main(["apply", "fmnist-resnet", "--plan", str(missing_plan), "--out", str(out)]) == 2
    assert "already exists and is not an empty folder" in _error(capsys)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_a_reference_with_other_outputs_is_one_line(capsys):
    assert main(["profile", "fmnist-resnet", "--reference", "imagenet-mobilenetv2", "--samples", "8"]) == 2
    assert "fidelity compares outputs of the same shape" in _error(capsys)

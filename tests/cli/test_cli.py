"""The `rankscope` command: listings, profiles, and one-line errors with exit code 2 for bad input."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import pytest
import torch

from core.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """`python -m core ARGS` in a fresh process; importing torch there takes seconds, so its tests are slow."""
    return subprocess.run([sys.executable, "-m", "core", *args], capture_output=True, text=True, timeout=600)


def assert_one_line_error(proc: subprocess.CompletedProcess, pattern: str) -> None:
    import re

    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr
    assert re.search(pattern, lines[-1]), lines[-1]


def test_models_lists_shipped_names(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("fmnist-resnet", "fmnist-vit", "fmnist-capsnet"):
        assert name in out
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert "test top-1 0.9317" in lines["fmnist-resnet"] and "PSNR 37.87 dB (bicubic 34.48)" in lines["srmd-x2"]
    assert "perplexity 39.29 (32 windows of shakespeare)" in lines["smollm2-135m"]  # from its card: nothing is loaded


def test_shipped_cfg_reads_the_card_without_building_and_names_an_unknown_model():
    from core.errors import RankscopeError
    from core.models import shipped_cfg

    assert shipped_cfg("fmnist-vit").card["test_accuracy"] == pytest.approx(0.8944)
    with pytest.raises(RankscopeError, match="unknown shipped model 'fmnist-resnett'.*fmnist-resnet"):
        shipped_cfg("fmnist-resnett")


def test_layers_json_lists_every_weighted_layer(capsys):
    assert main(["layers", "fmnist-resnet", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    names = [r["name"] for r in rows]
    assert names[0] == "stem.0" and "fc" in names and "layer2.0.downsample.0" in names
    assert abs(sum(r["flops_share"] for r in rows) - 1.0) < 0.02  # convs and linears are nearly all FLOPs
    fc = rows[names.index("fc")]
    assert fc["type"] == "Linear" and fc["weight_shape"] == [10, 64] and fc["params"] == 650
    assert "svd" in fc["methods"]


@pytest.mark.slow  # a subprocess per case
@pytest.mark.parametrize(
    "args,pattern",
    [
        (["profile", "fmnist-resnt"], r"unknown model 'fmnist-resnt' \(did you mean: fmnist-resnet"),
        (["profile", "fmnist-resnet", "--samples", "0"], r"--samples must be at least 1, got 0"),
        (["profile", "fmnist-resnet", "--samples", "-5"], r"--samples must be at least 1, got -5"),
        (["profile", "fmnist-resnet", "--threads", str((os.cpu_count() or 1) + 1)], r"larger than this machine's \d+ cores"),
        (["profile", "fmnist-resnet", "--data", "cifar10:/nonexistent"], r"cifar10 not found under /nonexistent"),
        (["layers", "timm:resnet5O"], r"unknown timm model 'resnet5O'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, pattern):
    assert_one_line_error(run_cli(*args), pattern)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.slow  # subprocesses
def test_bad_checkpoints_exit_2(tmp_path):
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"w": _Exploit()}))
    assert_one_line_error(run_cli("profile", "fmnist-resnet", "--weights", str(evil)), r"refused to load .*evil\.pt")
    wrong = tmp_path / "wrong.pt"
    torch.save({"fc.weight": torch.zeros(3, 3)}, wrong)
    assert_one_line_error(run_cli("layers", f"file:{wrong}", "--arch", "fmnist-resnet"), r"does not fit the architecture: missing keys: stem\.0\.weight")


@pytest.mark.slow  # a subprocess
def test_profile_json_has_the_documented_keys():
    proc = run_cli("profile", "fmnist-resnet", "--samples", "200", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("model", "params", "flops", "latency_ms", "latency_p90_ms", "peak_memory_mb", "model_size_mb", "accuracy", "samples"):
        assert key in result
    assert result["samples"] == 200 and result["params"] == 77754
    assert 0.85 < result["accuracy"] <= 1.0 and result["latency_p90_ms"] >= result["latency_ms"] > 0


@pytest.mark.parametrize(
    "name,first,methods_of_first,min_share",
    [
        ("timm:resnet50", "conv1", "svd", 0.95),
        ("timm:mobilenetv3_small_100", "conv_stem", "svd", 0.95),
        ("timm:vit_tiny_patch16_224", "patch_embed.proj", "svd", 0.8),  # attention's matmuls belong to no layer
        ("torchvision:resnet18", "conv1", "svd", 0.95),
    ],
)
def test_layers_of_library_models_offline(capsys, name, first, methods_of_first, min_share):
    assert main(["layers", name, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rows[0]["name"] == first and methods_of_first in rows[0]["methods"]
    assert len(rows) > 15 and min_share < sum(r["flops_share"] for r in rows) <= 1.0 + 1e-9

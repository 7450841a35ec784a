"""Starting plans from rank rules, and the plan/apply command line round trip."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from core.plan.starting import make_plan
from core.layers import layer_inputs, weighted_layers
from core.decompose.rank_rules import dense_cost
from core.decompose.registry import get_method
from core.errors import RankscopeError
from core.models import create_model
from core.plan import apply_plan, load_plan
from core.profile.counts import count_flops


@pytest.fixture(scope="module")
def resnet():
    return create_model("fmnist-resnet")


def test_ratio_plan_meets_the_flop_budget_layer_by_layer(resnet):
    model, cfg = resnet
    plan = make_plan(model, cfg, "tucker2", ratio=0.5, kind="flops")
    assert set(plan.layers) | set(plan.skipped) == set(weighted_layers(model))
    assert plan.skipped == {"fc": "not decomposable: tucker2 needs a Conv2d or ConvTranspose2d, got Linear"}
    x = torch.zeros(1, *cfg.input_size)
    compressed, report = apply_plan(model, plan)
    assert len(report.applied) == 9
    assert count_flops(compressed, x).total < count_flops(model, x).total * 0.5 + 2 * 640  # fc (640 MACs) is kept


def test_energy_plan_skips_layers_it_would_not_shrink(resnet):
    model, cfg = resnet
    plan = make_plan(model, cfg, "svd", energy=0.95)
    layers = weighted_layers(model)
    hws = {n: tuple(x.shape[-2:]) for n, x in layer_inputs(model, list(layers), torch.zeros(1, *cfg.input_size)).items()}
    svd = get_method("svd")
    assert plan.skipped and plan.layers
    for name, why in plan.skipped.items():
        assert "svd at rank" in why and "would not reduce params" in why
    for name, entry in plan.layers.items():
        assert svd.cost(layers[name], entry.rank, hws[name]).params < dense_cost(layers[name], hws[name]).params


def test_exactly_one_rule(resnet):
    with pytest.raises(RankscopeError, match="exactly one rank rule"):
        make_plan(*resnet, "svd", energy=0.9, ratio=0.5)


@pytest.mark.slow  # two `rankscope` processes
def test_plan_then_apply_on_the_command_line(tmp_path):
    plan_file, out = tmp_path / "plan.yaml", tmp_path / "compressed"
    run = lambda *a: subprocess.run([sys.executable, "-m", "core", *a], capture_output=True, text=True, timeout=600)
    proc = run("plan", "fmnist-resnet", "--method", "svd", "--vbmf", "--out", str(plan_file))
    assert proc.returncode == 0, proc.stderr
    proc = run("apply", "fmnist-resnet", "--plan", str(plan_file), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors", "plan.yaml", "rankscope.json"]
    loaded, _ = create_model(f"file:{out}")
    expected, _ = apply_plan(create_model("fmnist-resnet")[0], load_plan(plan_file))
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(loaded(x), expected(x))
    again = run("apply", "fmnist-resnet", "--plan", str(plan_file), "--out", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr


@pytest.mark.slow  # a `rankscope` process each
@pytest.mark.parametrize(
    "text,pattern",
    [
        ("model: [", r"not valid YAML/JSON"),
        ("model: fmnist-resnet\nlayers:\n  fc: {method: svd, rank: 99}\n", r"fc: rank out of range \(99 not in 1\.\.10\)"),
        ("model: fmnist-resnet\nlayers:\n  fc: {method: svd, rank: 2, extra: 1}\n", r"fc: unknown keys extra"),
    ],
)
def test_malformed_plan_on_the_command_line_exits_2(tmp_path, text, pattern):
    import re

    plan_file = tmp_path / "bad.yaml"
    plan_file.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "core", "profile", "fmnist-resnet", "--plan", str(plan_file)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert re.search(pattern, proc.stderr.strip().splitlines()[-1])


@pytest.mark.slow  # over a second on the 2-core machine
def test_data_aware_plan_saves_and_reloads(tmp_path, resnet):
    from core.data import calibration_batch
    from core.plan import LayerEntry, Plan
    from core.plan.saved import save_compressed

    model, cfg = resnet
    plan = Plan("fmnist-resnet", {"fc": LayerEntry("aa_svd", 4), "layer3.0.conv2": LayerEntry("tucker2_nl", [16, 16], options={"steps": 20})})
    with pytest.raises(RankscopeError, match="need calibration data"):
        apply_plan(model, plan)
    compressed, _ = apply_plan(model, plan, calibration=calibration_batch("fashion-mnist", cfg, samples=64))
    save_compressed(compressed, plan, "fmnist-resnet", tmp_path / "out")
    loaded, _ = create_model(f"file:{tmp_path / 'out'}")
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(loaded(x), compressed(x))


@pytest.mark.parametrize(
    "name,skipped_reason",
    [
        ("timm:mobilenetv3_small_100", "not decomposable: its weight has rank at most 1"),
        ("timm:convnext_atto", "not decomposable: its weight has rank at most 1"),
        ("timm:vit_tiny_patch16_224", None),
    ],
)
@pytest.mark.slow  # over a second on the 2-core machine
def test_plan_covering_every_layer_of_timm_models_applies(name, skipped_reason):
    model, cfg = create_model(name)
    plan = make_plan(model, cfg, "svd", ratio=0.5)
    compressed, report = apply_plan(model, plan)
    assert len(report.applied) == len(plan.layers) > 10
    assert set(plan.layers) | set(report.skipped) == set(weighted_layers(model))
    if skipped_reason:
        assert any(skipped_reason in why for why in report.skipped.values())
    with torch.no_grad():
        assert compressed(torch.randn(1, *cfg.input_size)).shape == (1, cfg.num_classes)

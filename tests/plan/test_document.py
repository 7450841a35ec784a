"""Plan documents: parse, validate against a model, apply without touching the original, round-trip exactly."""
from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from core.errors import RankscopeError
from core.models import create_model
from core.plan import LayerEntry, Plan, PlanError, apply_plan, load_plan, loads_plan, save_plan, validate_plan, weights_hash


@pytest.fixture(scope="module")
def resnet():
    return create_model("fmnist-resnet")[0]


def _plan(model) -> Plan:
    return Plan(
        "fmnist-resnet",
        {
            "layer2.0.conv2": LayerEntry("tucker2", [16, 12]),
            "layer3.0.conv1": LayerEntry("svd", 20),
            "layer1.0.conv1": LayerEntry("cp", 12),
            "layer1.0.conv2": LayerEntry("tt", 6),
            "layer3.0.conv2": LayerEntry("spatial_svd", 30),
            "fc": LayerEntry("svd", 4),
        },
        weights_hash(model),
    )


def test_yaml_and_json_hold_the_same_plan(tmp_path, resnet):
    plan = _plan(resnet)
    save_plan(plan, tmp_path / "p.yaml")
    save_plan(plan, tmp_path / "p.json")
    assert load_plan(tmp_path / "p.yaml") == load_plan(tmp_path / "p.json") == plan
    assert "ranks: [16, 12]" in (tmp_path / "p.yaml").read_text()


def test_apply_leaves_the_original_untouched(resnet):
    before = copy.deepcopy(resnet.state_dict())
    new, report = apply_plan(resnet, _plan(resnet))
    assert all(torch.equal(before[k], v) for k, v in resnet.state_dict().items())
    assert type(resnet.fc).__name__ == "Linear" and type(new.fc).__name__ != "Linear"
    assert set(report.applied) == set(_plan(resnet).layers)
    assert report.applied["layer2.0.conv2"] == "tucker2 rank 16x12"


def test_exported_plan_reapplies_bit_identically(tmp_path, resnet):
    x = torch.randn(8, 1, 28, 28)
    first, _ = apply_plan(resnet, _plan(resnet))
    save_plan(_plan(resnet), tmp_path / "p.yaml")
    from core.decompose import CACHE

    CACHE.clear()  # the second application recomputes every factorization (CP, TT included) from scratch
    second, _ = apply_plan(create_model("fmnist-resnet")[0], load_plan(tmp_path / "p.yaml"))
    assert torch.equal(first(x), second(x))


def test_validation_reports_every_problem_with_its_path(resnet):
    plan = Plan(
        "fmnist-resnet",
        {
            "layer9.conv": LayerEntry("svd", 4),
            "layer1.0.bn1": LayerEntry("svd", 4),
            "fc": LayerEntry("svd", 65),
            "stem.0": LayerEntry("tucker2", [0, 4]),
            "layer1.0.conv1": LayerEntry("warp", 3),
        },
    )
    problems = validate_plan(plan, resnet)
    assert len(problems) == 5
    assert problems[0] == "layer9.conv: no such module in the model"
    assert problems[1].startswith("layer1.0.bn1: svd does not apply (not decomposable")
    assert problems[2] == "fc: rank out of range (65 not in 1..10)"
    assert problems[3] == "stem.0: rank out of range (0 not in 1..1)"
    assert problems[4].startswith("layer1.0.conv1: unknown method 'warp'")
    with pytest.raises(PlanError, match="5 problems"):
        apply_plan(resnet, plan)


def test_wrong_weights_hash_is_refused_unless_forced(resnet):
    plan = replace(_plan(resnet), weights_hash="0" * 16)
    with pytest.raises(RankscopeError, match="pass --force"):
        apply_plan(resnet, plan)
    _, report = apply_plan(resnet, plan, force=True)
    assert report.warnings and "0000000000000000" in report.warnings[0]


@pytest.mark.parametrize(
    "text,pattern",
    [
        ("model: [unclosed", r"not valid YAML/JSON at line 1"),
        ("- just\n- a list\n", r"top level must be a mapping"),
        ("model: m\nlayerz: {}\n", r"unknown top-level keys layerz"),
        ("model: m\nschema: 7\n", r"schema 7 is not supported"),
        ("model: m\nlayers:\n  fc: {method: svd, rank: 2.5}\n", r"fc: 'rank' must be an integer, got 2.5"),
        ("model: m\nlayers:\n  fc: {method: svd, rnak: 2}\n", r"fc: unknown keys rnak"),
        ("model: m\nlayers:\n  fc: {rank: 2}\n", r"fc: 'method' is required"),
        ("model: m\nlayers:\n  fc: {method: resample, density: 1.5}\n", r"fc: density must be a number in \(0, 1\], got 1.5"),
        ("model: m\nlayers:\n  a: {method: svd, ranks: 3}\n  b: 7\n", r"2 problems: a: 'ranks' must be a list.*b: entry must be a mapping"),
    ],
)
def test_malformed_plans_say_what_is_wrong(text, pattern):
    with pytest.raises(PlanError, match=pattern):
        loads_plan(text)


def test_a_key_the_entry_kind_does_not_take_is_named():
    with pytest.raises(PlanError) as err:
        loads_plan("model: m\nlayers:\n  fc: {method: svd, rank: 4, density: 0.3}\n"
                   "groups:\n  g: {method: prune, density: 0.5, rank: 2}\n")
    assert err.value.problems == [
        "fc: unknown keys density (a decomposition entry takes method, options, rank, ranks)",
        "g: unknown keys rank (a prune entry takes density, method, options)",
    ]


def test_plan_file_that_is_not_utf8_text_is_one_error(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_bytes(b"model: m\nlayers: {fc: {method: svd, rank: 4}}\n\xff\xfe")
    with pytest.raises(RankscopeError, match=r"not UTF-8 text \(byte 46\)"):
        load_plan(path)


@pytest.mark.slow  # about a second: 1,000 levels of nesting
def test_deeply_nested_yaml_is_one_error():
    with pytest.raises(PlanError, match="nested too deeply"):
        loads_plan("model: m\nlayers: " + "[" * 1000 + "]" * 1000 + "\n")


def test_plans_are_hashable_by_content(resnet):
    a, b = _plan(resnet), _plan(resnet)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert hash(replace(a, layers={**a.layers, "fc": LayerEntry("svd", 5)})) != hash(a)
    assert LayerEntry("tucker2", [4, 4]) == LayerEntry("tucker2", (4, 4))

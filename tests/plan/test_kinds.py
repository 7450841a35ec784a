"""Plans that mix decompositions, attention variants and channel-group densities: file format, checks, apply."""
from __future__ import annotations

import pytest
import torch

from core.models import create_model
from core.errors import RankscopeError
from core.plan import LayerEntry, Plan, PlanError, apply_plan, compress, load_plan, loads_plan, save_plan, validate_plan
from core.profile import count_params, example_input


@pytest.fixture(scope="module")
def resnet():
    return create_model("fmnist-resnet")


@pytest.fixture(scope="module")
def vit():
    return create_model("fmnist-vit")


def _mixed() -> Plan:
    return Plan("fmnist-resnet", {"layer3.0.conv2": LayerEntry("tucker2", [16, 16])},
                groups={"layer1.0.conv1": LayerEntry("resample", density=0.5),
                        "layer3.0.conv1": LayerEntry("prune", density=0.5, options={"score": "l1"})})


def test_groups_section_round_trips_through_yaml_and_json(tmp_path):
    for name in ("p.yaml", "p.json"):
        save_plan(_mixed(), tmp_path / name)
        assert load_plan(tmp_path / name) == _mixed()
    assert "groups:" in (tmp_path / "p.yaml").read_text()


def test_a_group_method_under_layers_and_a_variant_without_attention_are_named():
    with pytest.raises(PlanError) as err:
        loads_plan("model: m\nlayers:\n  a: {method: resample, density: 0.5}\n  b: {method: svd, rank: 2, variant: nmf}\n"
                   "groups:\n  c: {method: svd, rank: 2}\n")
    assert err.value.problems == [
        "a: resample entries belong under 'groups'",
        "b: 'variant' (e.g. nmf) goes with method: attention, and only with it",
        "c: svd entries belong under 'layers'",
    ]


def test_mixed_plan_narrows_groups_then_decomposes_on_the_narrowed_model(resnet):
    model, cfg = resnet
    x = example_input(cfg, 4)
    new, report = apply_plan(model, _mixed(), example=x[:1])
    assert new.layer1[0].conv1.out_channels == 8 and new.layer1[0].conv2.in_channels == 8  # 16 channels resampled to 8
    assert new.layer3[0].conv1.out_channels == 32 and new.layer3[0].bn1.num_features == 32  # 64 pruned to 32
    assert type(new.layer3[0].conv2).__name__ == "Decomposed"
    assert report.applied["layer1.0.conv1"] == "resample density 0.5 (conv group: 16 → 8 channels)"
    assert report.applied["layer3.0.conv1"] == "prune l1 density 0.5 (64 → 32 channels)"
    assert new(x).shape == (4, 10) and count_params(new) < count_params(model)
    assert model.layer1[0].conv1.out_channels == 16  # the original is untouched


def test_ranks_are_checked_against_the_narrowed_layer(resnet):
    model, cfg = resnet
    plan = Plan("fmnist-resnet", {"layer1.0.conv2": LayerEntry("tucker2", [16, 16])},
                groups={"layer1.0.conv1": LayerEntry("resample", density=0.5)})
    assert validate_plan(plan, model, example_input(cfg, 1)) == ["layer1.0.conv2: rank out of range (16 not in 1..8)"]


def test_group_entries_are_checked_by_name_density_and_options(resnet):
    model, cfg = resnet
    plan = Plan("fmnist-resnet", groups={"layer1.0.conv": LayerEntry("resample", density=0.5),
                                         "layer2.0.conv1": LayerEntry("prune", rank=3, options={"score": "l2"})})
    problems = validate_plan(plan, model, example_input(cfg, 1))
    assert problems[0].startswith("layer1.0.conv: no channel group resample can take by that name (did you mean: layer1.0.conv1")
    assert problems[1:] == ["layer2.0.conv1: prune needs density: the fraction of the group's channels to keep, in (0, 1]",
                            "layer2.0.conv1: prune takes a density, not a rank",
                            "layer2.0.conv1: unknown pruning score 'l2' (known: l1, taylor, hessian, lamp)"]
    assert validate_plan(plan, model)[0].endswith("resample and prune entries need an example input to find the channel groups")


def test_attention_entries_swap_the_variant_and_refuse_bad_ones(vit):
    model, cfg = vit
    x = example_input(cfg, 2)
    plan = loads_plan("model: fmnist-vit\nlayers:\n"
                      "  blocks.0.attn: {method: attention, variant: nmf, rank: 4, options: {steps: 3}}\n"
                      "  blocks.1.attn: {method: attention, variant: softmax}\n")
    new, report = apply_plan(model, plan, example=x[:1])
    assert report.applied == {"blocks.0.attn": "attention nmf rank 4", "blocks.1.attn": "attention softmax"}
    assert type(new.blocks[0].attn).__name__ != type(model.blocks[0].attn).__name__
    only_softmax, _ = apply_plan(model, Plan("fmnist-vit", {"blocks.1.attn": LayerEntry("attention", variant="softmax")}),
                                 example=x[:1])
    torch.testing.assert_close(only_softmax(x), model(x), atol=1e-5, rtol=1e-5)  # SDPA reproduces timm's attention
    bad = loads_plan("model: fmnist-vit\nlayers:\n  blocks.0.attn: {method: attention, variant: nmff}\n"
                     "  blocks.1.attn: {method: attention, variant: linformer, rank: 8}\n"
                     "  blocks.2.mlp.fc1: {method: attention, variant: nmf}\n"
                     "  blocks.3.attn: {method: attention, variant: nmf}\n  blocks.3.attn.qkv: {method: svd, rank: 8}\n")
    problems = validate_plan(bad, model)
    assert problems[0].startswith("blocks.0.attn: unknown attention variant 'nmff' (did you mean: nmf")
    assert problems[1] == "blocks.1.attn: linformer has no rank; give its size in options (k)"
    assert problems[2].startswith("blocks.2.mlp.fc1: attention needs an attention module")
    assert problems[3] == "blocks.3.attn.qkv: inside blocks.3.attn, which the plan replaces by an attention variant"


@pytest.mark.slow  # over a second on the 2-core machine
def test_a_saved_mixed_model_reloads_and_computes_the_same(tmp_path, vit):
    from core.data import labelled_batch
    from core.plan.saved import save_compressed

    model, cfg = vit
    plan = loads_plan("model: fmnist-vit\nlayers:\n  blocks.0.mlp.fc2: {method: svd, rank: 16}\n"
                      "  blocks.1.attn: {method: attention, variant: nmf, rank: 4, options: {steps: 3}}\n"
                      "  blocks.2.attn: {method: attention, variant: linformer, options: {k: 16}}\n"
                      "groups:\n  blocks.2.mlp.fc1: {method: resample, density: 0.5}\n"
                      "  blocks.3.attn.heads: {method: prune, density: 0.5, options: {score: taylor}}\n")
    x, y = labelled_batch("fashion-mnist", cfg, 32)
    new, report = apply_plan(model, plan, calibration=x, labels=y, example=x[:1])
    assert report.applied["blocks.3.attn.heads"] == "prune taylor density 0.5 (4 → 2 heads)"
    save_compressed(new, plan, "fmnist-vit", tmp_path / "out")
    back, _ = create_model(f"file:{tmp_path / 'out'}")
    torch.testing.assert_close(back(x[:8]), new(x[:8]), atol=0, rtol=0)


def test_gradient_pruning_scores_refuse_unlabelled_calibration_data(resnet):
    model, cfg = resnet
    plan = Plan("fmnist-resnet", groups={"layer1.0.conv1": LayerEntry("prune", density=0.5, options={"score": "taylor"})})
    photos_like = (example_input(cfg, 8), torch.full((8,), -1))
    with pytest.raises(RankscopeError, match="taylor/hessian pruning scores need labelled calibration data"):
        compress(model, cfg, plan, data=photos_like)

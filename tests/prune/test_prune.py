"""prune_model: exact channel counts, physically smaller working models, untouched originals, clear errors."""
from __future__ import annotations

import copy

import pytest
import torch
import torch_pruning as tp
from torch import nn

from core.errors import RankscopeError
from core.models import create_model
from core.profile.counts import count_params
from core.profile.report import example_input
from core.prune import SCORES, make_importance, needs_gradients, prunable_groups, prune_model, uniform_densities
from core.prune.groups import graph_setup
from core.resample.resample import new_size


def outputs(model: nn.Module, example: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(example)


@pytest.mark.slow  # over a second on the 2-core machine
@pytest.mark.parametrize("which", ["resnet", "vit"])
def test_density_one_leaves_outputs_identical(which, request, calibration):
    model, example = request.getfixturevalue(which)
    pruned, report = prune_model(model, example, uniform_densities(model, example, 1.0), score="taylor", data=calibration)
    torch.testing.assert_close(outputs(pruned, example), outputs(model, example), atol=1e-6, rtol=0)
    assert report.params_after == report.params_before
    assert all(c.after == c.before for c in report.groups.values())


@pytest.mark.parametrize("score", SCORES)
def test_resnet_at_half_density_is_physically_smaller(resnet, calibration, score):
    model, example = resnet
    before = {n: p.clone() for n, p in model.state_dict().items()}
    pruned, report = prune_model(model, example, uniform_densities(model, example, 0.5), score=score, data=calibration)
    widths = {"stem.0": 16, "layer1.0.conv1": 16, "layer2.0.conv1": 32, "layer2.0.downsample.0": 32,
              "layer3.0.conv1": 64, "layer3.0.downsample.0": 64}
    for name, width in widths.items():
        assert pruned.get_submodule(name).out_channels == width // 2
        assert (report.groups[name].before, report.groups[name].after) == (width, width // 2)
    assert pruned.fc.in_features == 32 and pruned.fc.out_features == 10
    assert count_params(pruned) == report.params_after < report.params_before == count_params(model)
    assert outputs(pruned, example).shape == (2, 10)
    assert all(torch.equal(before[n], t) for n, t in model.state_dict().items())  # original untouched
    assert all(p.grad is None for p in list(pruned.parameters()) + list(model.parameters()))


@pytest.mark.slow  # over half a second each on the 2-core machine
@pytest.mark.parametrize("score", SCORES)
def test_vit_at_half_density_drops_heads_and_mlp_units(vit, calibration, score):
    model, example = vit
    pruned, report = prune_model(model, example, uniform_densities(model, example, 0.5), score=score, data=calibration)
    for block in pruned.blocks:
        assert block.attn.num_heads == 2 and block.attn.head_dim == 16
        assert block.attn.qkv.out_features == 3 * 32 and block.attn.proj.in_features == 32
        assert block.mlp.fc1.out_features == 64 and block.mlp.fc2.in_features == 64
        assert block.attn.qkv.in_features == 64  # residual stream untouched
    assert model.blocks[0].attn.num_heads == 4
    assert report.groups["blocks.2.attn.heads"] == report.groups["blocks.2.attn.heads"].__class__("heads", 4, 2)
    assert count_params(pruned) < count_params(model)
    assert outputs(pruned, example).shape == (2, 10)


@pytest.mark.slow  # over half a second on the 2-core machine
def test_timm_resnet18_l1_half_density():
    model, cfg = create_model("timm:resnet18")
    example = example_input(cfg)
    pruned, report = prune_model(model, example, uniform_densities(model, example, 0.5))
    assert all(c.after == c.before // 2 for c in report.groups.values())
    assert pruned.conv1.out_channels == 32 and pruned.layer4[1].conv2.out_channels == 256
    assert pruned.fc.in_features == 256
    assert count_params(pruned) < count_params(model)
    assert outputs(pruned, example).shape == (1, 1000)


def test_residual_groups_stay_consistent(resnet):
    model, example = resnet
    densities = {"stem.0": 0.25, "layer2.0.downsample.0": 0.5, "layer3.0.downsample.0": 0.75, "layer1.0.conv1": 0.3}
    pruned, _ = prune_model(model, example, densities)
    graph = tp.DependencyGraph().build_dependency(pruned, example_inputs=example)
    for group in graph.get_all_groups(root_module_types=[nn.Conv2d, nn.Linear], ignored_layers=[pruned.fc]):
        counts = {graph.get_out_channels(d.target) if graph.is_out_channel_pruning_fn(d.handler) else graph.get_in_channels(d.target)
                  for d, _ in group if isinstance(d.target.module, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))}
        assert len(counts) == 1, group
    stem = new_size(16, 0.25)
    assert stem == 4
    assert [pruned.stem[0].out_channels, pruned.stem[1].num_features, pruned.layer1[0].conv2.out_channels,
            pruned.layer1[0].bn2.num_features, pruned.layer2[0].conv1.in_channels,
            pruned.layer2[0].downsample[0].in_channels] == [stem] * 6
    assert pruned.layer1[0].conv1.out_channels == pruned.layer1[0].conv2.in_channels == round(0.3 * 16) == 5


def test_pruned_heads_equal_masked_heads_of_the_original(vit):
    model, example = vit
    pruned, _ = prune_model(model, example, {"blocks.1.attn.heads": 0.5})
    qkv = model.blocks[1].attn.qkv.weight.view(3, 4, 16, 64)  # (q/k/v, head, head_dim, in)
    kept = [h for h in range(4) if any(torch.equal(qkv[0, h], row) for row in pruned.blocks[1].attn.qkv.weight.view(3, 2, 16, 64)[0])]
    assert len(kept) == 2
    assert torch.equal(pruned.blocks[1].attn.qkv.weight.view(3, 2, 16, 64), qkv[:, kept])
    masked = copy.deepcopy(model)
    with torch.no_grad():
        proj = masked.blocks[1].attn.proj.weight.view(64, 4, 16)  # (out, head, head_dim)
        proj[:, [h for h in range(4) if h not in kept]] = 0
    torch.testing.assert_close(outputs(pruned, example), outputs(masked, example), atol=1e-5, rtol=1e-5)


def test_l1_keeps_the_channels_with_largest_l1_norms():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 6, 3, bias=False)
    norms = torch.tensor([3.0, 1.0, 6.0, 2.0, 5.0, 4.0])
    with torch.no_grad():
        signs = torch.randn_like(conv.weight).sign()
        conv.weight.copy_(signs * (norms / 27).view(6, 1, 1, 1))  # each channel's 27 weights sum to its norm in |.|
    head = nn.Linear(6, 2, bias=False)
    nn.init.ones_(head.weight)  # equal weight on every channel: the group score ranks by the conv alone
    model = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
    example = torch.randn(1, 3, 8, 8)
    assert prunable_groups(model, example) == {"0": ("channels", 6)}
    pruned, _ = prune_model(model, example, {"0": 0.5}, score="l1")
    torch.testing.assert_close(pruned[0].weight, conv.weight[[2, 4, 5]])
    torch.testing.assert_close(pruned[4].weight, torch.ones(2, 3))


def test_round_to_keeps_multiples(resnet):
    model, example = resnet
    _, report = prune_model(model, example, uniform_densities(model, example, 0.6), round_to=8)
    assert {n: c.after for n, c in report.groups.items()} == {
        "stem.0": 8, "layer1.0.conv1": 8, "layer2.0.conv1": 16, "layer2.0.downsample.0": 16,
        "layer3.0.conv1": 32, "layer3.0.downsample.0": 32}


def test_gradient_scores_use_gradients(resnet, calibration):
    model, example = resnet
    kept = {}
    for score in ("l1", "taylor", "hessian"):
        pruned, _ = prune_model(model, example, uniform_densities(model, example, 0.5), score=score, data=calibration)
        kept[score] = {n: pruned.get_submodule(n).weight.sum((1, 2, 3)) for n in prunable_groups(model, example)}
    for score in ("taylor", "hessian"):
        assert any(kept[score][n].shape != kept["l1"][n].shape or not torch.equal(kept[score][n].sort().values, kept["l1"][n].sort().values)
                   for n in kept["l1"]), score
    assert needs_gradients("taylor") and needs_gradients("hessian") and not needs_gradients("l1") and not needs_gradients("lamp")


@pytest.mark.parametrize("score", ["taylor", "hessian"])
def test_gradient_scores_without_data_raise(resnet, score):
    model, example = resnet
    with pytest.raises(RankscopeError, match="pass data="):
        prune_model(model, example, {"stem.0": 0.5}, score=score)


def test_bad_input_raises(resnet):
    model, example = resnet
    with pytest.raises(RankscopeError, match=r"did you mean: layer1\.0\.conv1.*groups: stem\.0"):
        prune_model(model, example, {"layer1.0.conv2": 0.5})
    for density in (0, -0.1, 1.5, "half"):
        with pytest.raises(RankscopeError, match="in \\(0, 1\\]"):
            prune_model(model, example, {"stem.0": density})
    with pytest.raises(RankscopeError, match="l1, taylor, hessian, lamp"):
        make_importance("l2")
    with pytest.raises(RankscopeError, match="unknown pruning score"):
        prune_model(model, example, {"stem.0": 0.5}, score="random")


def test_kept_channels_round_and_keep_one():
    assert [new_size(10, d) for d in (1.0, 0.55, 0.3, 0.01)] == [10, 6, 3, 1]


def test_training_mode_is_kept(resnet):
    model, example = resnet
    trained = copy.deepcopy(model).train()
    pruned, _ = prune_model(trained, example, {"stem.0": 0.5})
    assert pruned.training and trained.training
    assert graph_setup(pruned).ignored == [pruned.fc]


def test_pruned_resnet_equals_original_with_removed_channels_zeroed(resnet):
    """Removing a channel equals zeroing it after every BatchNorm of its group: tp cut the right slices."""
    model, example = resnet
    pruned, _ = prune_model(model, example, uniform_densities(model, example, 0.5))
    norms_of = {  # the BatchNorms whose outputs carry each group's channels
        "stem.0": ["stem.1", "layer1.0.bn2"], "layer1.0.conv1": ["layer1.0.bn1"], "layer2.0.conv1": ["layer2.0.bn1"],
        "layer2.0.downsample.0": ["layer2.0.downsample.1", "layer2.0.bn2"], "layer3.0.conv1": ["layer3.0.bn1"],
        "layer3.0.downsample.0": ["layer3.0.downsample.1", "layer3.0.bn2"],
    }
    masked = copy.deepcopy(model)
    for root, norms in norms_of.items():
        # channels are told apart by their BatchNorm's running mean (a conv's rows lose input channels too)
        original, kept = model.get_submodule(norms[0]).running_mean, pruned.get_submodule(norms[0]).running_mean
        removed = [c for c in range(len(original)) if original[c] not in kept]
        assert len(removed) == len(original) - len(kept)
        with torch.no_grad():
            for norm in norms:
                masked.get_submodule(norm).weight[removed] = 0
                masked.get_submodule(norm).bias[removed] = 0
    torch.testing.assert_close(outputs(pruned, example), outputs(masked, example), atol=1e-5, rtol=1e-5)

"""Group names follow the rule shared with core.resample, computed here straight from tp's dependency graph."""
from __future__ import annotations

import pytest
import torch
import torch_pruning as tp
from timm.layers import Attention
from torch import nn

from core.errors import RankscopeError
from core.models import create_model
from core.profile.report import example_input
from core.prune import GroupInfo, prunable_groups


def expected_groups(model: nn.Module, example: torch.Tensor, ignored: list[nn.Module]) -> dict[str, int]:
    """``{path of group[0].dep.target.module: out channels}`` for the groups of tp's graph, the rule itself."""
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    paths = {m: n for n, m in model.named_modules()}
    return {paths[g[0].dep.target.module]: graph.get_out_channels(g[0].dep.target.module)
            for g in graph.get_all_groups(root_module_types=[nn.Conv2d, nn.Linear], ignored_layers=ignored)}


@pytest.mark.parametrize("name", ["fmnist-resnet", "timm:resnet18"])
def test_cnn_group_names_follow_the_rule(name):
    model, cfg = create_model(name)
    example = example_input(cfg)
    classifier = model.fc
    expected = expected_groups(model, example, [classifier])
    groups = prunable_groups(model, example)
    assert groups == {n: GroupInfo("channels", c) for n, c in expected.items()}
    assert "fc" not in groups


def test_fmnist_resnet_names_are_the_expected_six(resnet):
    model, example = resnet
    assert list(prunable_groups(model, example)) == [
        "stem.0", "layer1.0.conv1", "layer2.0.conv1", "layer2.0.downsample.0", "layer3.0.conv1", "layer3.0.downsample.0"]


@pytest.mark.filterwarnings("ignore:Unwrapped parameters")  # the reference graph is built without prune_model's setup
def test_vit_offers_heads_and_mlp_but_not_the_residual_stream(vit):
    model, example = vit
    expected = expected_groups(model, example, [model.head, model.patch_embed.proj])
    groups = prunable_groups(model, example)
    heads = {n.removesuffix(".qkv") + ".heads": GroupInfo("heads", 4) for n in expected if n.endswith(".qkv")}
    mlps = {n: GroupInfo("channels", 128) for n in expected if n.endswith("mlp.fc1")}
    assert groups == {**heads, **mlps}
    assert len(heads) == len(mlps) == 4
    assert all(isinstance(model.get_submodule(n.removesuffix(".heads")), Attention) for n in heads)


def test_capsule_network_is_refused():
    model, cfg = create_model("fmnist-capsnet", pretrained=False)
    with pytest.raises(RankscopeError, match="capsule"):
        prunable_groups(model, example_input(cfg))

"""Channel groups: names follow the shared Torch-Pruning convention, kinds and members are right."""
from __future__ import annotations

import warnings

import torch_pruning as tp
from torch import nn

from core.resample.groups import KINDS, channel_matrix, ignored_layers


def tp_names(model, example) -> list[str]:
    """The group names of the convention shared with core/prune, straight from Torch-Pruning."""
    names = {m: n for n, m in model.named_modules()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
        groups = graph.get_all_groups(root_module_types=[nn.Conv2d, nn.Linear], ignored_layers=ignored_layers(model, example))
        return [names[g[0].dep.target.module] for g in groups]


def test_names_follow_the_torch_pruning_rule(zoo):
    for name, (model, example, groups) in zoo.items():
        expected = {n for n in tp_names(model, example)}
        # The hand-written groups replace the graph's group rooted at the same layer.
        renamed = {g[: -len(".heads")] + ".qkv" if g.endswith(".heads") else g[: -len(".types")] if g.endswith(".types") else g
                   for g in groups}
        assert renamed == expected, name


def test_fmnist_resnet_groups_in_model_order(zoo):
    _, _, groups = zoo["fmnist-resnet"]
    assert [(n, g.kind, g.size) for n, g in groups.items()] == [
        ("stem.0", "residual", 16), ("layer1.0.conv1", "conv", 16), ("layer2.0.conv1", "conv", 32),
        ("layer2.0.downsample.0", "residual", 32), ("layer3.0.conv1", "conv", 64), ("layer3.0.downsample.0", "residual", 64),
    ]
    keys = {m.key: m for m in groups["layer3.0.downsample.0"].members}
    assert keys["fc.weight"].role == "in" and keys["layer3.0.bn2.running_var"].role == "out"
    assert {"layer3.0.conv2.weight", "layer3.0.downsample.0.weight"} <= set(keys)


def test_vit_heads_and_mlp_groups_no_residual_stream(zoo):
    model, _, groups = zoo["fmnist-vit"]
    assert list(groups) == [f"blocks.{i}.{p}" for i in range(4) for p in ("attn.heads", "mlp.fc1")]
    heads = groups["blocks.0.attn.heads"]
    assert heads.kind == "heads" and heads.size == 4
    qkv = next(m for m in heads.members if m.key == "blocks.0.attn.qkv.weight")
    assert (qkv.outer, qkv.inner) == (3, 16)
    assert channel_matrix(model.blocks[0].attn.qkv.weight, qkv, 4).shape == (4, 3 * 16 * 64)
    assert groups["blocks.0.mlp.fc1"].kind == "mlp" and groups["blocks.0.mlp.fc1"].size == 128


def test_capsule_types_group(zoo):
    model, _, groups = zoo["fmnist-capsnet"]
    group = groups["primary.types"]
    assert group.kind == "capsule-types" and group.size == model.types == 8
    W = next(m for m in group.members if m.key == "digits.W")
    assert W.role == "in" and W.inner == 7 * 7


def test_resnet18_residual_groups(zoo):
    _, _, groups = zoo["timm:resnet18"]
    residual = [n for n, g in groups.items() if g.kind == "residual"]
    assert residual == ["conv1", "layer2.0.downsample.0", "layer3.0.downsample.0", "layer4.0.downsample.0"]
    assert all(g.kind in KINDS for g in groups.values())


def test_an_image_to_image_models_last_conv_is_no_group():
    import torch

    from core.resample.groups import channel_groups, output_layer

    torch.manual_seed(0)
    shuffle = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                            nn.Conv2d(16, 12, 3, padding=1), nn.PixelShuffle(2)).eval()  # SRMD's shape
    upconv = nn.Sequential(nn.Conv2d(3, 16, 3), nn.LeakyReLU(0.1), nn.ConvTranspose2d(16, 3, 4, 2, 3)).eval()  # waifu2x's
    x = torch.rand(1, 3, 16, 16)
    assert output_layer(shuffle, x) is shuffle[4] and output_layer(upconv, x) is upconv[2]
    assert list(channel_groups(shuffle, x)) == ["0", "2"]  # the sub-pixel planes of conv 4 stay whole

"""BatchNorm folding: exact on dense and compressed models, into the last factor, only where it is safe; subnormals."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from core.export import count_batchnorms, count_subnormals, flush_subnormals, fold_batchnorm, fold_model
from core.plan import LayerEntry, Plan, compress
from tests.export.helpers import randomize_batchnorms, relative_error, toy_cfg, toy_input, toy_resnet


def outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def test_dense_resnet_like_toy_folds_exactly_and_leaves_the_original():
    model, x = toy_resnet(), toy_input()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = fold_model(model, x)
    assert result.traced and len(result.folded) == 5  # stem, conv1, conv2, downsample and the Linear's BatchNorm1d
    assert count_batchnorms(result.model) == 0
    assert relative_error(outputs(result.model, x), outputs(model, x)) < 1e-5
    assert count_batchnorms(model) == 5 and all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_linear_batchnorm_is_folded_only_when_an_example_shows_2d_outputs():
    model = toy_resnet()
    assert ("head.1", "head.2") not in fold_model(model).folded  # no example: the Linear's output rank is unknown
    assert ("head.1", "head.2") in fold_model(model, toy_input()).folded


@pytest.mark.parametrize("entries", [
    {"block.conv1": LayerEntry("svd", 4), "block.downsample.0": LayerEntry("svd", 4)},
    {"block.conv1": LayerEntry("tucker2", (4, 6)), "block.conv2": LayerEntry("tucker2", (6, 6))},
], ids=["svd", "tucker2"])
def test_compressed_model_folds_into_the_last_factor(entries):
    dense, x = toy_resnet(), toy_input()
    model, _ = compress(dense, toy_cfg(), Plan("toy-resnet", entries))
    model.eval()
    result = fold_model(model, x)
    for path in entries:
        last = f"{path}.{len(model.get_submodule(path)) - 1}"
        assert last in {layer for layer, _ in result.folded}
        assert result.model.get_submodule(last).bias is not None  # the BatchNorm's shift became the bias
    assert count_batchnorms(result.model) == 0
    assert relative_error(outputs(result.model, x), outputs(model, x)) < 1e-5


@pytest.mark.slow  # building resnet18
def test_resnet18_keeps_no_batchnorm():
    model = randomize_batchnorms(torchvision.models.resnet18(num_classes=10)).eval()
    assert count_batchnorms(model) == 20
    assert count_batchnorms(fold_batchnorm(model)) == 0


class Shared(nn.Module):
    """The conv's output feeds the BatchNorm and the sum: folding would change the sum."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


class Untraceable(nn.Module):
    """Control flow on a value (fx cannot trace it), an nn.Sequential conv-bn, and an attribute pair."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
        self.conv, self.bn = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.features(x)
        return self.bn(self.conv(y)) if y.sum() > 0 else y


def test_a_conv_output_with_another_user_is_not_folded():
    model = randomize_batchnorms(Shared()).eval()
    assert fold_model(model).folded == ()


def test_training_mode_batchnorm_is_left_alone():
    model = toy_resnet().train()
    assert fold_model(model).folded == ()


def test_untraceable_model_falls_back_to_sequential_containers():
    model, x = randomize_batchnorms(Untraceable()).eval(), toy_input()
    result = fold_model(model)
    assert not result.traced and result.folded == (("features.0", "features.1"),)  # conv / bn: wiring unknown
    assert relative_error(outputs(result.model, x), outputs(model, x)) < 1e-5


def tiny_scale_pair() -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    """A conv and a BatchNorm whose scale (1e-37) makes most folded weights subnormal."""
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 4, 3).eval(), nn.BatchNorm2d(4).eval()
    with torch.no_grad():
        bn.weight.fill_(1e-37)
    return conv, bn


def test_subnormal_folded_weights_are_counted_and_flushed():
    conv, bn = tiny_scale_pair()
    expected = count_subnormals(fuse_conv_bn_eval(conv, bn))
    assert expected > 0
    result = fold_model(nn.Sequential(conv, bn).eval())
    assert result.flushed == expected
    assert count_subnormals(result.model) == 0
    fused = result.model[0]
    assert int((fused.weight == 0).sum() + (fused.bias == 0).sum()) == expected  # the bias is scaled by 1e-37 too


def test_flush_subnormals_zeroes_only_subnormals():
    layer = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1e-39, -1e-40, 2e-38]]))  # two subnormal, one normal
    assert (count_subnormals(layer), flush_subnormals(layer), count_subnormals(layer)) == (2, 2, 0)
    assert layer.weight.tolist() == [[0.0, 0.0, pytest.approx(2e-38)]]

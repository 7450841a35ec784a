"""FLOPs, parameters and sizes against hand-computed counts."""
from __future__ import annotations

import torch
from torch import nn

from tests.helpers import CONV_FLOPS, LINEAR_FLOPS, TINY_PARAMS
from core.profile import count_flops, count_params, layer_table, model_size_mb


class Nested(nn.Module):
    """Children below a custom root class, to check the per-module keys are ``named_modules`` paths."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(512, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).flatten(1))


def test_flops_equal_analytic_count(tiny_net):
    flops = count_flops(tiny_net, torch.randn(1, 3, 8, 8))
    assert CONV_FLOPS == 27_648 and LINEAR_FLOPS == 10_240
    assert flops.total == CONV_FLOPS + LINEAR_FLOPS
    assert flops.by_module == {"0": CONV_FLOPS, "3": LINEAR_FLOPS, "": CONV_FLOPS + LINEAR_FLOPS}
    assert flops.per_sample == CONV_FLOPS + LINEAR_FLOPS


def test_flops_scale_with_batch_and_per_sample_does_not(tiny_net):
    flops = count_flops(tiny_net, torch.randn(4, 3, 8, 8))
    assert flops.total == 4 * (CONV_FLOPS + LINEAR_FLOPS)
    assert flops.batch_size == 4
    assert flops.per_sample == CONV_FLOPS + LINEAR_FLOPS


def test_flop_breakdown_keys_are_named_module_paths():
    model = Nested()
    flops = count_flops(model, torch.randn(1, 3, 8, 8))
    assert flops.by_module == {
        "": CONV_FLOPS + LINEAR_FLOPS, "body": CONV_FLOPS, "body.0": CONV_FLOPS, "head": LINEAR_FLOPS,
    }
    assert set(flops.by_module) <= set(dict(model.named_modules()))


def test_params_and_size_of_known_modules(tiny_net):
    assert count_params(tiny_net) == TINY_PARAMS == 5_354
    assert model_size_mb(tiny_net) == TINY_PARAMS * 4 / 1e6
    bn = nn.BatchNorm2d(8)  # weight, bias: 16 params; running mean/var: 16 floats; num_batches_tracked: one int64
    assert count_params(bn) == 16
    assert model_size_mb(bn) == (16 * 4 + 16 * 4 + 8) / 1e6


def test_shared_parameters_are_counted_once():
    a, b = nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False)
    b.weight = a.weight
    tied = nn.Sequential(a, b)
    assert count_params(tied) == 16
    assert model_size_mb(tied) == 16 * 4 / 1e6


def test_layer_table_rows_and_flop_shares(tiny_net, tiny_cfg):
    table = layer_table(tiny_net, tiny_cfg)
    assert list(table.columns) == ["name", "type", "weight_shape", "params", "flops", "flops_share"]
    assert table["name"].tolist() == ["0", "3"]  # ReLU and Flatten have no weights
    assert table["type"].tolist() == ["Conv2d", "Linear"]
    assert table["weight_shape"].tolist() == [(8, 3, 3, 3), (10, 512)]
    assert table["params"].tolist() == [8 * 27 + 8, 5120 + 10]
    assert table["flops"].tolist() == [CONV_FLOPS, LINEAR_FLOPS]
    total = CONV_FLOPS + LINEAR_FLOPS
    assert table["flops_share"].tolist() == [CONV_FLOPS / total, LINEAR_FLOPS / total]

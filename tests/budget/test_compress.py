"""The budget call's choice of layers: every layer aa_svd takes, but a head tied to an embedding."""
from __future__ import annotations

import pytest
from torch import nn

from core.budget.compress import aware_layers
from core.errors import RankscopeError


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.body = nn.Linear(16, 16)
        self.depthwise = nn.Conv2d(4, 4, 3, groups=4)
        self.head = nn.Linear(16, 50, bias=False)
        self.head.weight = self.embed.weight


def test_a_tied_head_and_grouped_convs_are_left_out():
    assert aware_layers(Tied()) == {"body": ["aa_svd"]}


def test_a_named_layer_aa_svd_cannot_take_is_one_error():
    with pytest.raises(RankscopeError, match="depthwise: .*ungrouped conv"):
        aware_layers(Tied(), ["body", "depthwise"])
    with pytest.raises(RankscopeError, match="no layer named 'nowhere'"):
        aware_layers(Tied(), ["nowhere"])

"""Capacity: the spectrum along the channel axis says how many channels a group needs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import RankscopeError
from core.resample.capacity import capacity, cutoff, group_spectrum, recommended_density, spectrum
from core.resample.groups import ChannelGroup, Member


def synthetic(rows: torch.Tensor) -> tuple[dict[str, torch.Tensor], ChannelGroup]:
    """A group of one producer (N, 20) and one consumer (5, N) holding ``rows`` and their transpose."""
    n = rows.shape[0]
    state = {"a.weight": rows, "b.weight": rows[:, :5].T.contiguous()}
    group = ChannelGroup("a", "linear", n, (Member("a.weight", 0, "out"), Member("b.weight", 1, "in")))
    return state, group


def test_low_frequency_group_needs_few_channels():
    gen = torch.Generator().manual_seed(0)
    x = (torch.arange(64, dtype=torch.float64) + 0.5) / 64
    basis = torch.stack([torch.cos(np.pi * k * x) for k in range(3)], 1)  # (64, 3) the first DCT frequencies
    rows = basis @ torch.randn(3, 20, generator=gen, dtype=torch.float64)
    state, group = synthetic(rows)
    e = spectrum(state, group)
    assert e.shape == (64,) and abs(e.sum() - 1) < 1e-9
    assert cutoff(e) <= 3 and recommended_density(e) <= 6 / 64


def test_white_noise_needs_every_channel():
    state, group = synthetic(torch.randn(64, 20, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    assert recommended_density(spectrum(state, group)) == 1.0


def test_capacity_table_and_spectrum(zoo):
    model, example, groups = zoo["fmnist-resnet"]
    table = capacity(model, example)
    assert list(table.columns) == ["group", "kind", "channels", "recommended_density", "cutoff"]
    assert list(table.group) == list(groups)
    assert ((table.recommended_density > 0) & (table.recommended_density <= 1)).all()
    spec = group_spectrum(model, example, "layer2.0.conv1")
    assert len(spec) == 32 and abs(spec.energy.sum() - 1) < 1e-9 and spec.cumulative.iloc[-1] == pytest.approx(1)
    with pytest.raises(RankscopeError, match="unknown channel group"):
        group_spectrum(model, example, "nope")

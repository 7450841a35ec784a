"""Rank fractions, spectra with energy kept, and output error versus rank."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from core.decompose import get_method
from core.errors import RankscopeError
from core.layers.study import error_curve, output_error, spectra
from core.decompose.rank import mode_names, rank_at, rank_grid


@pytest.fixture
def conv() -> nn.Conv2d:
    torch.manual_seed(0)
    return nn.Conv2d(8, 12, 3, padding=1)


def test_fractions_map_onto_each_method_vocabulary(conv):
    assert rank_at(get_method("svd"), conv, 1.0) == 12  # min(12, 8*3*3)
    assert rank_at(get_method("svd"), conv, 0.01) == 1
    assert rank_at(get_method("tucker2"), conv, 0.5) == (4, 6)
    with pytest.raises(RankscopeError, match="fraction 0"):
        rank_at(get_method("svd"), conv, 0)
    assert mode_names(get_method("tucker2")) == ("input rank", "output rank")


def test_rank_grid_is_distinct_and_reaches_full_rank(conv):
    grid = rank_grid(get_method("tucker2"), conv, points=5)
    assert len(grid) == len(set(grid)) == 5
    assert grid[0] == (1, 1) and grid[-1] == (8, 12)


def test_spectrum_energy(conv):
    (spectrum,) = spectra(get_method("svd"), conv)
    assert spectrum.mode == "rank" and len(spectrum.values) == 12
    assert np.all(np.diff(spectrum.values) <= 0)
    assert spectrum.energy_kept(12) == pytest.approx(1.0)
    assert 0 < spectrum.energy_kept(3) < spectrum.energy_kept(6) < 1
    assert [s.mode for s in spectra(get_method("tucker2"), conv)] == ["input rank", "output rank"]
    assert spectra(get_method("cp"), conv) == []


def test_output_error_falls_to_zero_at_full_rank(conv):
    x = torch.randn(4, 8, 10, 10, generator=torch.Generator().manual_seed(2))
    method = get_method("svd")
    curve = error_curve(conv, method, x, rank_grid(method, conv, points=4))
    assert list(curve.columns) == ["rank", "fraction", "params", "error"]
    assert list(curve["rank"]) == ["1", "5", "8", "12"]
    assert curve["error"].is_monotonic_decreasing
    assert curve["error"].iloc[-1] < 1e-5 and curve["fraction"].iloc[-1] == 1.0
    assert output_error(conv, conv, x) == 0.0
    assert len(error_curve(conv, method, x, [1, 2], cancel=lambda: True)) == 0

"""Output error never grows with rank for SVD (any data) and Tucker-2 (white inputs).

SVD: ``||(W - W_r) X||^2 = sum_{i > r} s_i^2 ||v_i^T X||^2`` for any inputs X, so the error is
non-increasing in r on any data. Tucker-2 (HOSVD): the weight error ``||W - P_o W P_c||`` is
non-increasing in each rank (nested orthogonal projections), hence so is the output error for inputs
whose patches are white; on correlated real inputs it can rise by a little between neighbouring
ranks (the cross term between the two projections does not vanish), which
``test_tucker2_weight_error_is_monotone`` and the module docs state.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from core.decompose import get_method
from tests.decompose.helpers import conv2d_layers, rel_error

SLACK = 1e-6  # float32 round-off between neighbouring ranks


def structured_conv(cin: int = 8, cout: int = 12) -> nn.Conv2d:
    """A conv whose kernels are smooth oriented derivative-of-Gaussian filters mixed across channels (decaying spectrum)."""
    torch.manual_seed(3)
    grid = torch.linspace(-1, 1, 5)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    bank = []
    for k in range(6):
        angle = k * math.pi / 6
        u = xx * math.cos(angle) + yy * math.sin(angle)
        bank.append(u * torch.exp(-(xx**2 + yy**2) / 0.5))
    bank = torch.stack(bank)  # (6, 5, 5)
    mix_out, mix_in = torch.randn(cout, 6), torch.randn(cin, 6) * torch.tensor([1.0, 0.6, 0.4, 0.2, 0.1, 0.05])
    conv = nn.Conv2d(cin, cout, 5, padding=2)
    with torch.no_grad():
        conv.weight.copy_(torch.einsum("ok,ck,kab->ocab", mix_out, mix_in, bank) + 0.01 * torch.randn(cout, cin, 5, 5))
    return conv


def errors(name: str, module: nn.Module, ranks, x: torch.Tensor) -> list[float]:
    y = module(x)
    return [rel_error(get_method(name).build(module, r)(x), y) for r in ranks]


def assert_non_increasing(errs: list[float]) -> None:
    assert all(b <= a + SLACK for a, b in zip(errs, errs[1:])), errs


@settings(max_examples=10, deadline=None)
@given(layer=conv2d_layers())
def test_svd_conv_error_non_increasing_on_random_geometry(layer):
    conv, x = layer
    assert_non_increasing(errors("svd", conv, range(1, get_method("svd").max_rank(conv) + 1), x))


@settings(max_examples=10, deadline=None)
@given(shape=st.tuples(st.integers(2, 16), st.integers(2, 16)), seed=st.integers(0, 2**16))
def test_svd_linear_error_non_increasing(shape, seed):
    torch.manual_seed(seed)
    linear = nn.Linear(*shape)
    x = torch.randn(32, shape[0]) @ torch.randn(shape[0], shape[0])  # correlated inputs: still monotone
    assert_non_increasing(errors("svd", linear, range(1, min(shape) + 1), x))


def test_svd_error_non_increasing_on_structured_and_real(real_features):
    conv = structured_conv(12, 16)
    assert_non_increasing(errors("svd", conv, range(1, 17), real_features[:64]))


def tucker_paths(module: nn.Conv2d) -> list[list[tuple[int, int]]]:
    """Both ranks together, then each rank alone with the other at half its maximum."""
    top_in, top_out = get_method("tucker2").max_rank(module)
    both = [(max(1, round(t * top_in / top_out)), t) for t in range(1, top_out + 1)]
    return [both, [(r, top_out // 2) for r in range(1, top_in + 1)], [(top_in // 2, r) for r in range(1, top_out + 1)]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tucker2_output_error_non_increasing_random_weights(seed):
    torch.manual_seed(seed)
    conv = nn.Conv2d(6, 10, 3, stride=2, padding=1)
    x = torch.randn(256, 6, 12, 12)  # white inputs
    for path in tucker_paths(conv):
        assert_non_increasing(errors("tucker2", conv, path, x))


def test_tucker2_output_error_non_increasing_structured_weight():
    conv = structured_conv()
    x = torch.randn(64, 8, 12, 12)
    for path in tucker_paths(conv):
        assert_non_increasing(errors("tucker2", conv, path, x))


@pytest.mark.parametrize("kind", ["structured", "random"])
def test_tucker2_weight_error_is_monotone(kind):
    """The HOSVD truncation error of the kernel itself is monotone in each rank (nested projections)."""
    conv = structured_conv() if kind == "structured" else nn.Conv2d(6, 10, 3)
    hosvd = get_method("tucker2").factorization(conv)
    W = conv.weight.detach().double()

    def weight_error(ranks):
        core, (U_in, U_out) = hosvd.factors(ranks)
        return (torch.einsum("ij...,ai,bj->ab...", core, U_out, U_in) - W).norm().item()

    for path in tucker_paths(conv):
        errs = [weight_error(r) for r in path]
        assert all(b <= a + 1e-9 for a, b in zip(errs, errs[1:])), errs

"""Data-aware methods on real Fashion-MNIST activations: activation-aware SVD and nonlinear Tucker-2."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from hypothesis import given, settings

from core.decompose import fit_outputs, get_method
from core.decompose._specs import conv_patches
from core.profile.counts import count_params
from tests.decompose.helpers import conv2d_layers, rel_error

SLACK = 1e-9  # float64 round-off


@settings(max_examples=15, deadline=None)
@given(layer=conv2d_layers())
def test_conv_patches_are_what_the_conv_multiplies(layer):
    """aa_svd's covariance is built from these patches: weight @ patches must be the conv (any padding and mode)."""
    conv, x = layer
    y = conv(x)
    out = conv.weight.reshape(conv.out_channels, -1) @ conv_patches(conv, x)  # (N, O, L)
    if conv.bias is not None:
        out = out + conv.bias[:, None]
    assert rel_error(out.reshape(y.shape), y) < 1e-5


def errors_by_rank(conv_or_linear: nn.Module, x: torch.Tensor, calibration: torch.Tensor) -> list[tuple[float, float]]:
    """(aa_svd, svd) relative output error on ``x`` at every rank."""
    y = conv_or_linear(x)
    aa, svd = get_method("aa_svd"), get_method("svd")
    return [
        (rel_error(aa.build(conv_or_linear, r, calibration=calibration)(x), y), rel_error(svd.build(conv_or_linear, r)(x), y))
        for r in range(1, svd.max_rank(conv_or_linear) + 1)
    ]


def test_aa_svd_never_worse_than_svd_conv_real_data(real_features):
    torch.manual_seed(1)
    conv = nn.Conv2d(12, 16, 3, padding=1).double()
    x = real_features[:64, :, 7:21, 7:21].double()  # centre crops: the object, not the blank border
    pairs = errors_by_rank(conv, x, calibration=x)
    assert all(aa <= svd + SLACK for aa, svd in pairs), pairs
    assert pairs[len(pairs) // 2][0] < 0.9 * pairs[len(pairs) // 2][1]  # and clearly better mid-way on real inputs


def test_aa_svd_never_worse_than_svd_linear_real_data(fashion):
    torch.manual_seed(2)
    embed = nn.Linear(28 * 28, 48)
    with torch.no_grad():
        x = torch.relu(embed(fashion[:256].flatten(1))).double()
    linear = nn.Linear(48, 24).double()
    pairs = errors_by_rank(linear, x, calibration=x)
    assert all(aa <= svd + SLACK for aa, svd in pairs), pairs


@pytest.mark.parametrize("damping", [0.0, 0.01, 1.0])
def test_aa_svd_bound_holds_for_any_damping(real_features, damping):
    torch.manual_seed(3)
    conv = nn.Conv2d(12, 8, 3, stride=2, padding=1, padding_mode="reflect").double()
    x = real_features[:64].double()
    y = conv(x)
    for r in (1, 3, 6):
        aa = rel_error(get_method("aa_svd").build(conv, r, calibration=x, damping=damping + 1e-8)(x), y)
        assert aa <= rel_error(get_method("svd").build(conv, r)(x), y) + SLACK


def test_aa_svd_factors_are_balanced_per_component_and_multiply_to_the_truncation(real_features):
    torch.manual_seed(5)
    conv = nn.Conv2d(12, 16, 3, padding=1)
    x = real_features[:64].float() * 40 + 3  # large, offset activations: the whitening factor L is far from 1
    factorization = get_method("aa_svd").factorize(conv, x)
    first, second = factorization.factors(5)  # (1, 5, 108), (1, 16, 5)
    torch.testing.assert_close(first.norm(dim=2), second.norm(dim=1), rtol=1e-9, atol=0)
    s = factorization
    unbalanced = (s.U[:, :, :5] * s.S[:, None, :5]) @ torch.linalg.solve_triangular(s.L, s.Vh[:, :5], upper=False, left=False)
    torch.testing.assert_close(second @ first, unbalanced, rtol=1e-9, atol=1e-12)


@pytest.fixture(scope="module")
def nl_case(real_features):
    torch.manual_seed(4)
    conv = nn.Conv2d(12, 16, 3, padding=1)
    x = real_features[:16, :, 9:19, 9:19].contiguous()  # a small batch of centre crops keeps the fit fast
    return conv, x


def test_tucker2_nl_starts_at_linear_tucker2_exactly(nl_case):
    conv, x = nl_case
    linear = get_method("tucker2").build(conv, (4, 6))
    start = get_method("tucker2_nl").build(conv, (4, 6), calibration=x, steps=0)
    assert isinstance(start[1], nn.PReLU) and torch.all(start[1].weight == 1)
    assert torch.allclose(start(x), linear(x), atol=1e-6)


def test_tucker2_nl_not_worse_than_its_linear_init(nl_case):
    conv, x = nl_case
    y = conv(x)
    ranks = (4, 6)
    linear_err = rel_error(get_method("tucker2").build(conv, ranks)(x), y)
    fitted = get_method("tucker2_nl").build(conv, ranks, calibration=x, steps=40, lr=3e-3)
    fitted_err = rel_error(fitted(x), y)
    assert fitted_err <= linear_err + 1e-6
    assert fitted_err < linear_err  # the fit does improve on calibration data here
    assert get_method("tucker2_nl").cost(conv, ranks, (10, 10)).params == count_params(fitted) == count_params(get_method("tucker2").build(conv, ranks)) + ranks[0]


def test_fit_outputs_keeps_the_best_parameters(nl_case):
    conv, x = nl_case
    built = get_method("tucker2_nl").build(conv, (3, 3), calibration=x, steps=0)
    history = fit_outputs(built, conv, x, steps=20, lr=10.0)  # a wild learning rate makes later steps worse
    final = torch.nn.functional.mse_loss(built(x), conv(x)).item()
    assert final == pytest.approx(min(history), rel=1e-5)
    assert conv.weight.grad is None  # the original layer is never trained

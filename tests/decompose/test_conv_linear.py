"""Every method on Linear, Conv2d (all geometries), grouped/depthwise Conv2d and ConvTranspose2d.

At full rank the decomposed layer reproduces the original (relative output error < 1e-4; the
measured error is float32 round-off, ~1e-7, for CP and TT too). At any rank its ``cost`` equals
``count_params`` / ``count_flops`` of the built module, and the source module is left untouched.
"""
from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from core.decompose import Decomposed, get_method
from core.errors import RankscopeError
from core.profile.counts import count_flops, count_params
from tests.decompose.helpers import CONV_METHODS, LINEAR_METHODS, build, conv2d_layers, conv_transpose_layers, rel_error, scaled_rank

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's note on a padded copy

FULL_RANK_TOL = 1e-4
PROPERTY = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_reproduces_and_costs(name: str, module: nn.Module, x: torch.Tensor, fraction: float) -> None:
    """Full rank reproduces ``module(x)``; at full rank and at ``fraction`` of it, cost == measured counts."""
    method = get_method(name)
    before = copy.deepcopy(module.state_dict())
    expected = module(x)
    input_hw = tuple(x.shape[2:]) if x.dim() == 4 else None
    for rank in (method.max_rank(module), scaled_rank(method, module, fraction)):
        built = build(name, module, rank, calibration=x)
        assert isinstance(built, Decomposed) and built.method == name
        out = built(x)
        assert out.shape == expected.shape
        if rank == method.max_rank(module):
            assert rel_error(out, expected) < FULL_RANK_TOL, (name, rank, rel_error(out, expected))
        predicted = method.cost(module, rank, input_hw)
        assert predicted.params == count_params(built)
        assert predicted.flops == count_flops(built, x[:1]).total
    for key, value in module.state_dict().items():
        assert torch.equal(value, before[key]), f"{name} modified the source's {key}"


@pytest.mark.slow  # over half a second on the 2-core machine
@pytest.mark.parametrize("name", CONV_METHODS)
@PROPERTY
@given(layer=conv2d_layers(), fraction=st.floats(0.05, 1.0))
def test_conv2d_full_rank_and_cost(name, layer, fraction):
    conv, x = layer
    assert get_method(name).check(conv) is None  # every ungrouped conv with >= 2 channels each way qualifies
    assert_reproduces_and_costs(name, conv, x, fraction)


@pytest.mark.parametrize("name", LINEAR_METHODS)
@PROPERTY
@given(
    shape=st.tuples(st.integers(2, 12), st.integers(2, 12)),
    bias=st.booleans(),
    leading=st.sampled_from([(5,), (2, 3)]),
    fraction=st.floats(0.05, 1.0),
    seed=st.integers(0, 2**16),
)
def test_linear_full_rank_and_cost(name, shape, bias, leading, fraction, seed):
    torch.manual_seed(seed)
    linear = nn.Linear(*shape, bias=bias)
    x = torch.randn(*leading, shape[0])
    assert_reproduces_and_costs(name, linear, x.reshape(-1, shape[0]), fraction)
    assert build(name, linear, 1, x)(x).shape == (*leading, shape[1])  # any leading dims, like nn.Linear


def assert_decomposes_or_refuses(name: str, module: nn.Module, x: torch.Tensor, fraction: float) -> None:
    reason = get_method(name).check(module)
    if reason is None:
        assert_reproduces_and_costs(name, module, x, fraction)
        return
    assert reason.startswith("not decomposable: ") and len(reason) > len("not decomposable: ")
    with pytest.raises(RankscopeError, match="not decomposable"):
        build(name, module, 1, calibration=x)


@pytest.mark.parametrize("name", CONV_METHODS)
@PROPERTY
@given(layer=conv2d_layers(grouped=True), fraction=st.floats(0.05, 1.0))
def test_grouped_and_depthwise_conv(name, layer, fraction):
    conv, x = layer
    assert_decomposes_or_refuses(name, conv, x, fraction)
    if name == "spatial_svd" and get_method(name).max_rank(conv) > 1:
        assert get_method(name).check(conv) is None  # per-group spatial SVD applies to every grouped conv


@pytest.mark.parametrize("name", CONV_METHODS)
@PROPERTY
@given(layer=conv_transpose_layers(), fraction=st.floats(0.05, 1.0))
def test_conv_transpose(name, layer, fraction):
    conv, x = layer
    assert_decomposes_or_refuses(name, conv, x, fraction)
    if name == "svd" and get_method("svd").max_rank(conv) > 1:
        assert get_method(name).check(conv) is None  # channel SVD applies to every transposed conv with rank > 1


def test_low_rank_runs_factors_not_a_dense_weight():
    """At a low rank every method's layer is smaller and cheaper than the dense one: it cannot hold or run W."""
    torch.manual_seed(0)
    conv, x = nn.Conv2d(16, 32, 3, padding=1), torch.randn(2, 16, 10, 10)
    dense_params, dense_flops = count_params(conv), count_flops(conv, x[:1]).total
    for name in CONV_METHODS:
        built = build(name, conv, scaled_rank(get_method(name), conv, 0.1), calibration=x)
        assert count_params(built) < dense_params and count_flops(built, x[:1]).total < dense_flops, name
        assert all(p.shape != conv.weight.shape for p in built.parameters()), name


def test_cp_als_recovers_a_planted_low_rank_kernel():
    """Below the exact bound CP uses ALS: on a kernel of CP rank 3 it finds it (output error < 1e-3)."""
    torch.manual_seed(1)
    factors = [torch.randn(n, 3) for n in (12, 10, 3, 3)]
    conv = nn.Conv2d(10, 12, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(torch.einsum("or,cr,ar,br->ocab", *factors))
    x = torch.randn(4, 10, 8, 8)
    assert rel_error(get_method("cp").build(conv, 3)(x), conv(x)) < 1e-3


def test_tucker2_of_a_transposed_conv_is_exact_at_full_rank_and_shrinks_below():
    """waifu2x's upsampler: ConvTranspose2d(256, 3, 4, stride=2, padding=3); Tucker-2 keeps its geometry in the core."""
    torch.manual_seed(0)
    deconv, x = nn.ConvTranspose2d(32, 3, 4, stride=2, padding=3), torch.randn(2, 32, 9, 9)
    method = get_method("tucker2")
    assert method.max_rank(deconv) == (32, 3)
    full = build("tucker2", deconv, (32, 3))
    assert [type(m).__name__ for m in full] == ["Conv2d", "ConvTranspose2d", "Conv2d"]
    assert rel_error(full(x), deconv(x)) < FULL_RANK_TOL
    small = build("tucker2", deconv, (8, 3))
    assert count_params(small) < count_params(deconv) and small(x).shape == deconv(x).shape
    assert method.cost(deconv, (8, 3), (9, 9)).flops == count_flops(small, x[:1]).total
    assert "ungrouped transposed conv" in method.check(nn.ConvTranspose2d(4, 6, 3, groups=2))

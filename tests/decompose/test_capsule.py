"""Tucker and CP of the capsule transformation tensor W[in_caps, out_caps, out_dim, in_dim]."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from core.decompose import CPCapsuleRouting, TuckerCapsuleRouting, applicable_methods, get_method
from core.models.capsnet import CapsNet, CapsuleRouting
from core.profile.counts import count_flops, count_params
from tests.decompose.helpers import CAPSULE_METHODS, FAST_OPTIONS, rel_error, scaled_rank


@pytest.mark.parametrize("name", CAPSULE_METHODS)
@settings(max_examples=10, deadline=None)
@given(
    dims=st.tuples(st.integers(2, 12), st.integers(2, 4), st.integers(2, 5), st.integers(2, 4)),
    iters=st.integers(1, 3),
    fraction=st.floats(0.05, 1.0),
    seed=st.integers(0, 2**16),
)
@pytest.mark.slow  # over half a second on the 2-core machine
def test_full_rank_reproduces_routing_and_cost_matches(name, dims, iters, fraction, seed):
    torch.manual_seed(seed)
    in_caps, out_caps, out_dim, in_dim = dims
    routing = CapsuleRouting(in_caps, out_caps, in_dim, out_dim, iters)
    u = torch.randn(3, in_caps, in_dim)
    method = get_method(name)
    W_before = routing.W.detach().clone()
    for rank in (method.max_rank(routing), scaled_rank(method, routing, fraction)):
        built = method.build(routing, rank, **FAST_OPTIONS.get(name, {}))
        assert isinstance(built, CapsuleRouting) and not hasattr(built, "W")
        if rank == method.max_rank(routing):
            assert rel_error(built.predictions(u), routing.predictions(u)) < 1e-4
            assert rel_error(built(u), routing(u)) < 1e-4  # routing outputs (class capsules)
        cost = method.cost(routing, rank, None)
        assert cost.params == count_params(built)
        assert cost.flops == count_flops(built, u[:1]).total
    assert torch.equal(routing.W, W_before)


@pytest.mark.slow  # both capsule methods on a full-size (196x10x8x16) routing tensor
def test_low_rank_factors_are_far_smaller_than_W():
    routing = CapsuleRouting(196, 10, 8, 16)
    for name, rank in (("capsule_tucker", (16, 5, 8, 4)), ("capsule_cp", 6)):
        built = get_method(name).build(routing, rank, **FAST_OPTIONS.get(name, {}))
        assert count_params(built) < routing.W.numel() / 10
        assert all(p.numel() < routing.W.numel() / 10 for p in built.parameters())


def test_capsnet_with_factorized_routing_and_primary_conv():
    torch.manual_seed(0)
    model = CapsNet(types=4, in_dim=4, out_dim=6, width=8).eval()
    x = torch.rand(2, 1, 28, 28)
    expected = model(x)
    assert {"svd", "tucker2", "cp", "tt"} <= set(applicable_methods(model.primary))  # the primary capsules are a Conv2d
    assert applicable_methods(model.digits) == ["capsule_tucker", "capsule_cp"]
    model.primary = get_method("tucker2").build(model.primary, get_method("tucker2").max_rank(model.primary))
    model.digits = get_method("capsule_tucker").build(model.digits, get_method("capsule_tucker").max_rank(model.digits))
    assert isinstance(model.digits, TuckerCapsuleRouting)
    assert rel_error(model(x), expected) < 1e-4
    model.digits = get_method("capsule_cp").build(CapsNet(types=4, in_dim=4, out_dim=6, width=8).digits, 3)
    assert isinstance(model.digits, CPCapsuleRouting) and model(x).shape == (2, 10)


def test_factorized_routing_is_not_decomposed_again():
    built = get_method("capsule_cp").build(CapsuleRouting(6, 3, 4, 5), 2)
    assert get_method("capsule_tucker").check(built).startswith("not decomposable: ")
    assert applicable_methods(built) == []

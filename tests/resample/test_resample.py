"""Resampling: exact at density 1, physically smaller below, consistent across residual adds, differentiable."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import functional_call

from core.errors import RankscopeError
from core.resample.resample import (
    interpolation_matrix,
    new_size,
    resample_model,
    resampled_state,
    shrunk_copy,
)

MODELS = ["fmnist-resnet", "fmnist-vit", "fmnist-capsnet", pytest.param("timm:resnet18", marks=pytest.mark.slow)]  # timm:resnet18: ~4 s a case


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("order", [True, False])
def test_density_one_is_exact(zoo, name, order):
    model, example, groups = zoo[name]
    small, report = resample_model(model, example, {n: 1.0 for n in groups}, order=order)
    with torch.no_grad():
        torch.testing.assert_close(small(example), model(example), atol=1e-5, rtol=1e-5)
    assert report.params_after == report.params_before
    assert {zoo[name][2][c.name].kind for c in report.groups} == {g.kind for g in groups.values()}


@pytest.mark.slow  # over half a second on the 2-core machine
@pytest.mark.parametrize("name", MODELS)
def test_half_density_is_smaller_and_runs(zoo, name):
    model, example, groups = zoo[name]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    small, report = resample_model(model, example, {n: 0.5 for n in groups})
    with torch.no_grad():
        out = small(example)
    assert out.shape == model(example).shape and torch.isfinite(out).all()
    assert report.params_after < report.params_before
    assert all(c.new_channels == new_size(c.channels, 0.5) for c in report.groups)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # original untouched


def test_module_shapes_follow(zoo):
    model, example, _ = zoo["fmnist-vit"]
    small, _ = resample_model(model, example, {"blocks.0.attn.heads": 0.5, "blocks.1.mlp.fc1": 0.25})
    attn = small.blocks[0].attn
    assert (attn.num_heads, attn.head_dim, attn.qkv.out_features, attn.proj.in_features) == (2, 16, 96, 32)
    assert small.blocks[1].mlp.fc1.out_features == 32 and small.blocks[1].mlp.fc2.in_features == 32
    caps, example, _ = zoo["fmnist-capsnet"]
    small, _ = resample_model(caps, example, {"primary.types": 0.5})
    assert small.types == 4 and small.primary.out_channels == 32 and small.digits.W.shape[0] == 4 * 49


@pytest.mark.parametrize("name", ["fmnist-resnet", pytest.param("timm:resnet18", marks=pytest.mark.slow)])
def test_residual_groups_stay_consistent(zoo, name):
    model, example, groups = zoo[name]
    residual = [n for n, g in groups.items() if g.kind == "residual"]
    small, _ = resample_model(model, example, {n: 0.4 for n in residual})
    state = small.state_dict()
    for n in residual:
        n_new = new_size(groups[n].size, 0.4)
        for m in groups[n].members:
            assert state[m.key].shape[m.axis] == m.outer * n_new * m.inner, m.key
    with torch.no_grad():
        assert small(example).shape == model(example).shape  # every residual add lines up


def test_unknown_group_and_bad_density(zoo):
    model, example, _ = zoo["fmnist-resnet"]
    with pytest.raises(RankscopeError, match=r"did you mean: layer1\.0\.conv1.*valid groups: stem\.0"):
        resample_model(model, example, {"layer1.0.conv": 0.5})
    for bad in (0.0, 1.5, -0.2):
        with pytest.raises(RankscopeError, match="must be in"):
            resample_model(model, example, {"stem.0": bad})


@given(size=st.integers(1, 70), density=st.floats(0.01, 1.0))
@settings(max_examples=150, deadline=None)
def test_interpolation_matrix_properties(size, density):
    n = new_size(size, density)
    M = interpolation_matrix(size, n)
    assert M.shape == (n, size)
    torch.testing.assert_close(M.sum(1), torch.ones(n, dtype=M.dtype))  # rows sum to 1
    x = torch.linspace(0, 1, size, dtype=torch.float64)
    y = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.tensor([0.5], dtype=torch.float64)
    if size > 1:
        torch.testing.assert_close(M @ (3 * x - 2), 3 * y - 2)  # linear functions are reproduced exactly
    if n == size:
        assert torch.equal(M, torch.eye(size, dtype=M.dtype))


def test_interpolation_is_cubic_between_samples():
    x = torch.linspace(0, 1, 9, dtype=torch.float64)
    M = interpolation_matrix(9, 5)  # every other sample: the interpolation hits them exactly
    torch.testing.assert_close(M @ torch.sin(3 * x), torch.sin(3 * x[::2]))
    y = torch.linspace(0, 1, 7, dtype=torch.float64)
    err = (interpolation_matrix(9, 7) @ torch.sin(3 * x) - torch.sin(3 * y)).abs().max()
    assert err < 2e-3


def test_gradient_reaches_the_full_weights(zoo):
    model, example, groups = zoo["fmnist-resnet"]
    full = model.state_dict(keep_vars=True)
    densities = {n: 0.6 for n in groups}
    state = resampled_state(full, groups, densities)
    small = shrunk_copy(model, state)
    model.zero_grad(set_to_none=True)
    functional_call(small, state, (example,)).square().sum().backward()
    for key in ("stem.0.weight", "layer1.0.conv1.weight", "layer3.0.bn1.weight", "fc.weight"):
        assert full[key].grad is not None and full[key].grad.abs().sum() > 0, key
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("name,group", [("fmnist-vit", "blocks.2.attn.heads"), ("fmnist-capsnet", "primary.types")])
def test_functional_form_matches_the_built_model(zoo, name, group):
    """functional_call on a shrunk copy gives what resample_model's model gives (heads and capsule types need the copy)."""
    model, example, groups = zoo[name]
    state = resampled_state(model.state_dict(keep_vars=True), groups, {group: 0.5})
    built, _ = resample_model(model, example, {group: 0.5}, order=False)
    with torch.no_grad():
        torch.testing.assert_close(functional_call(shrunk_copy(model, state), state, (example,)), built(example))

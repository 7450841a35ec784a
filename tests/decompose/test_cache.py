"""Factorizations are computed once per layer; ranks of nested methods are slices; changed weights recompute."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from core.decompose import CACHE, factorization, get_method


def misses_during(fn) -> int:
    before = CACHE.misses
    fn()
    return CACHE.misses - before


def test_nested_methods_factorize_once_for_all_ranks():
    conv = nn.Conv2d(6, 8, 3)
    for name, ranks in (("svd", [1, 3, 6]), ("spatial_svd", [1, 2, 5]), ("tucker2", [(1, 2), (3, 3), (6, 8)])):
        assert misses_during(lambda: [get_method(name).build(conv, r) for r in ranks]) == 1, name
        assert misses_during(lambda: get_method(name).build(conv, ranks[0])) == 0
        assert factorization(conv, name) is factorization(conv, name)


def test_nested_truncation_is_a_slice_of_the_full_factorization():
    conv = nn.Conv2d(6, 8, 3)
    full = factorization(conv, "svd")
    first, second = full.factors(3)
    first_all, second_all = full.factors(full.S.shape[1])
    assert torch.equal(first, first_all[:, :3]) and torch.equal(second, second_all[:, :, :3])


def test_data_free_methods_ignore_calibration_for_caching():
    conv = nn.Conv2d(6, 8, 3)
    get_method("svd").build(conv, 2)
    assert misses_during(lambda: get_method("svd").build(conv, 3, calibration=torch.randn(2, 6, 7, 7))) == 0


@pytest.mark.slow  # CP fits per rank: over half a second
def test_cp_and_tt_cached_per_rank():
    conv = nn.Conv2d(4, 6, 3)
    for name in ("cp", "tt"):
        assert misses_during(lambda: get_method(name).build(conv, 2)) == 1
        assert misses_during(lambda: get_method(name).build(conv, 2)) == 0
        assert misses_during(lambda: get_method(name).build(conv, 3)) == 1


def test_tucker2_nl_shares_tucker2_factorization():
    conv = nn.Conv2d(4, 6, 3)
    x = torch.randn(2, 4, 7, 7)
    get_method("tucker2").build(conv, (2, 2))
    assert misses_during(lambda: get_method("tucker2_nl").build(conv, (3, 4), calibration=x, steps=1)) == 1  # the fit only
    again = misses_during(lambda: get_method("tucker2_nl").build(conv, (3, 4), calibration=x, steps=1))
    assert again == 0  # fitted factors are cached too
    a, b = (get_method("tucker2_nl").build(conv, (3, 4), calibration=x, steps=1) for _ in range(2))
    assert a is not b and all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_changed_weight_or_calibration_recomputes():
    conv = nn.Conv2d(4, 6, 3)
    old = get_method("svd").build(conv, 2)
    with torch.no_grad():
        conv.weight.mul_(2.0)  # in place: bumps the version counter
    assert misses_during(lambda: get_method("svd").build(conv, 2)) == 1
    x = torch.randn(2, 4, 7, 7)
    assert misses_during(lambda: get_method("aa_svd").build(conv, 2, calibration=x)) == 1
    assert misses_during(lambda: get_method("aa_svd").build(conv, 3, calibration=x)) == 0
    assert misses_during(lambda: get_method("aa_svd").build(conv, 3, calibration=x.clone())) == 1
    assert not torch.allclose(old[0].weight, get_method("svd").build(conv, 2)[0].weight)


def test_cache_is_bounded():
    for _ in range(CACHE.maxsize + 5):
        get_method("svd").build(nn.Linear(4, 3), 2)
    assert len(CACHE) <= CACHE.maxsize

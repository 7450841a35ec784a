"""Rank selection: energy kept, parameter/FLOP budget, VBMF."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from core.decompose import dense_cost, energy_rank, evbmf_rank, get_method, ratio_rank, select_ranks, vbmf_rank
from core.errors import RankscopeError
from core.models.capsnet import CapsuleRouting


def linear_with_spectrum(spectrum: list[float], out_features: int = 20, in_features: int = 30) -> nn.Linear:
    torch.manual_seed(0)
    U, _ = torch.linalg.qr(torch.randn(out_features, len(spectrum)))
    V, _ = torch.linalg.qr(torch.randn(in_features, len(spectrum)))
    linear = nn.Linear(in_features, out_features)
    with torch.no_grad():
        linear.weight.copy_(U @ torch.diag(torch.tensor(spectrum)) @ V.T)
    return linear


def test_energy_rank_counts_squared_singular_values():
    linear = linear_with_spectrum([3.0, 2.0, 1.0, 1.0, 0.5])  # energies 9, 4, 1, 1, 0.25 of 15.25
    assert energy_rank(linear, "svd", 9 / 15.25) == 1
    assert energy_rank(linear, "svd", 0.6) == 2
    assert energy_rank(linear, "svd", 14 / 15.25) == 3
    assert energy_rank(linear, "svd", 1.0) == 5


def test_energy_rank_per_mode_for_tucker_and_capsules():
    conv = nn.Conv2d(6, 10, 3)
    ranks = energy_rank(conv, "tucker2", 1.0)
    assert ranks == get_method("tucker2").max_rank(conv)
    small = energy_rank(conv, "tucker2", 0.3)
    assert len(small) == 2 and all(1 <= s <= m for s, m in zip(small, ranks))
    routing = CapsuleRouting(12, 3, 4, 5)
    assert energy_rank(routing, "capsule_tucker", 1.0) == get_method("capsule_tucker").max_rank(routing)


def test_energy_rank_for_aa_svd_uses_calibration():
    conv = nn.Conv2d(4, 8, 3)
    x = torch.randn(8, 4, 9, 9)
    assert 1 <= energy_rank(conv, "aa_svd", 0.5, calibration=x) <= 8
    with pytest.raises(RankscopeError, match="calibration"):
        energy_rank(conv, "aa_svd", 0.5)


@pytest.mark.parametrize("name", ["svd", "spatial_svd", "tucker2", "cp", "tt", "tucker2_nl"])
@pytest.mark.parametrize("kind", ["params", "flops"])
def test_ratio_rank_is_the_largest_within_budget(name, kind):
    conv = nn.Conv2d(16, 24, 3, padding=1)
    method = get_method(name)
    budget = 0.4 * getattr(dense_cost(conv, (12, 12)), kind)
    rank = ratio_rank(conv, name, 0.4, kind=kind, input_hw=(12, 12))
    assert getattr(method.cost(conv, rank, (12, 12)), kind) <= budget
    bigger = rank + 1 if method.rank_arity == 1 else tuple(r + 1 for r in rank)
    assert getattr(method.cost(conv, bigger, (12, 12)), kind) > budget


def test_ratio_rank_for_linear_and_capsules():
    linear = nn.Linear(40, 30)
    rank = ratio_rank(linear, "svd", 0.5)
    assert get_method("svd").cost(linear, rank, None).params <= 0.5 * dense_cost(linear).params
    assert get_method("svd").cost(linear, rank + 1, None).params > 0.5 * dense_cost(linear).params
    routing = CapsuleRouting(50, 4, 4, 6)
    ranks = ratio_rank(routing, "capsule_tucker", 0.2)
    assert get_method("capsule_tucker").cost(routing, ranks, None).params <= 0.2 * routing.W.numel()
    assert ratio_rank(linear, "svd", 1e-6) == 1  # an unreachable budget gives the smallest rank
    conv = nn.Conv2d(8, 8, 5, dilation=2, padding=4)
    assert ratio_rank(conv, "tucker2", 0.3) == ratio_rank(conv, "tucker2", 0.3, input_hw=(16, 16))  # params need no input size


def test_evbmf_finds_planted_rank():
    torch.manual_seed(0)
    for rows, cols, rank, noise in ((60, 80, 5, 0.3), (200, 50, 10, 1.0), (40, 40, 3, 0.1)):
        Y = torch.randn(rows, rank) @ torch.randn(rank, cols) + noise * torch.randn(rows, cols)
        assert evbmf_rank(torch.linalg.svdvals(Y).numpy(), (rows, cols)) == rank
    assert evbmf_rank(torch.linalg.svdvals(torch.randn(30, 40)).numpy(), (30, 40)) == 0  # pure noise


def test_vbmf_rank_of_layers():
    torch.manual_seed(1)
    linear = nn.Linear(80, 60)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(60, 4) @ torch.randn(4, 80) + 0.2 * torch.randn(60, 80))
    assert vbmf_rank(linear, "svd") == 4
    conv = nn.Conv2d(16, 24, 3)
    with torch.no_grad():  # Tucker ranks (r_in, r_out) = (3, 5) plus noise
        core = torch.randn(5, 3, 3, 3)
        conv.weight.copy_(torch.einsum("pqab,op,cq->ocab", core, torch.randn(24, 5), torch.randn(16, 3)) + 0.05 * torch.randn(24, 16, 3, 3))
    assert vbmf_rank(conv, "tucker2") == (3, 5)
    assert vbmf_rank(nn.Conv2d(8, 8, 3), "svd") >= 1  # never 0, even for pure noise


@pytest.mark.parametrize("rule", [energy_rank, vbmf_rank])
@pytest.mark.parametrize("name", ["cp", "tt", "capsule_cp"])
def test_spectral_rules_refuse_methods_without_singular_values(rule, name):
    module = CapsuleRouting(6, 3, 4, 5) if name.startswith("capsule") else nn.Conv2d(4, 6, 3)
    args = (0.9,) if rule is energy_rank else ()
    with pytest.raises(RankscopeError, match="no singular values"):
        rule(module, name, *args)


def test_select_ranks_maps_a_rule_over_layers():
    layers = {"a": nn.Conv2d(4, 8, 3), "b": nn.Conv2d(8, 8, 3, padding=1)}
    hws = {"a": (10, 10), "b": (8, 8)}
    ratio = select_ranks(layers, "svd", "ratio", 0.5, kind="flops", input_hws=hws)
    assert ratio == {name: ratio_rank(m, "svd", 0.5, kind="flops", input_hw=hws[name]) for name, m in layers.items()}
    assert set(select_ranks(layers, "tucker2", "energy", 0.9)) == {"a", "b"}
    assert all(r >= 1 for r in select_ranks(layers, "svd", "vbmf").values())
    with pytest.raises(RankscopeError, match="unknown rank rule"):
        select_ranks(layers, "svd", "best")
    with pytest.raises(RankscopeError, match="energy"):
        energy_rank(layers["a"], "svd", 1.5)


@pytest.mark.parametrize(("rank", "multiple", "want"), [(61, 8, 64), (60, 8, 56), (59, 8, 56), (4, 8, 8), (12, 8, 8), (13, 8, 16),
                                                        (100, 16, 96), (120, 16, 112), (127, 8, 128), (7, 1, 7)])
def test_round_rank_goes_to_the_nearest_multiple_within_range(rank, multiple, want):
    from core.decompose.rank import round_rank

    assert round_rank(get_method("svd"), nn.Linear(200, 128), rank, multiple) == want  # full rank 128


def test_round_rank_per_mode_and_below_the_multiple():
    from core.decompose.rank import rank_grid, round_rank

    tucker = get_method("tucker2")
    conv = nn.Conv2d(6, 40, 3)  # full ranks (6, 40): the input mode is below 8 and stays as it is
    assert round_rank(tucker, conv, (5, 21), 8) == (5, 24)
    assert all(r[1] % 8 == 0 for r in rank_grid(tucker, conv, 10, 8))
    assert len(rank_grid(tucker, conv, 10, 8)) < len(rank_grid(tucker, conv, 10))  # rounding merges ranks
    with pytest.raises(RankscopeError, match="at least 1"):
        round_rank(tucker, conv, (5, 21), 0)

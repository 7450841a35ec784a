"""Allocators: valid plans within the target (costs recomputed independently), and the knapsack beating AIMET's greedy."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from core.decompose.rank import rank_at
from core.decompose import get_method
from core.plan import validate_plan
from core.plan.cost import layer_sites, plan_cost
from core.profile import count_flops, count_params
from core.speed import LayerTimes
from core.sweep.allocate import ALLOCATORS, allocate
from core.sweep.budget import Option, Problem, Target
from core.sweep.knapsack import lower_hull
from core.data import eval_subset, training_data


def _problem(resnet, example, table, kind: str, fraction: float, allocator: str = "", times=None) -> Problem:
    if allocator == "whitened":  # aa_svd ranks on every layer the table sweeps, from calibration data, no table
        model, cfg = resnet[0], resnet[1]
        data = eval_subset(training_data("fashion-mnist", cfg), 64)
        layers = {layer: ["aa_svd"] for layer in table["layer"] if layer}
        return Problem(model, "fmnist-resnet", example, Target(kind, fraction), layers=layers, data=data, times=times)
    return Problem(resnet[0], "fmnist-resnet", example, Target(kind, fraction), table, times=times)


def _exact_cost(model, example, plan, kind: str) -> float:
    priced = plan_cost(model, plan, layer_sites(model, example, list(plan.layers)), count_params(model),
                       int(count_flops(model, example).per_sample))
    return priced.params_ratio if kind == "params" else priced.flops_ratio


@pytest.mark.parametrize("kind", ["flops", "params"])
@pytest.mark.parametrize("name", sorted(ALLOCATORS))
def test_every_allocator_meets_its_target_with_a_valid_plan(resnet, example, table, name, kind):
    model = resnet[0]
    result = allocate(name, _problem(resnet, example, table, kind, 0.4, name))
    assert validate_plan(result.plan, model) == []
    assert result.ratio == pytest.approx(_exact_cost(model, example, result.plan, kind), abs=1e-12)
    assert result.met and result.ratio <= 0.4
    if name != "vbmf":  # VBMF does not aim at the target; the others should come close to it
        assert result.ratio > 0.3, result.summary()
    assert set(result.plan.layers) | set(result.plan.skipped) == set(table["layer"]) - {""}


def _stub_timer(module: nn.Module, x: torch.Tensor) -> float:
    """A made-up clock: milliseconds = parameters / 1000, but a factorized layer on a 28x28 input takes 1 s (slower
    than dense whatever its rank), and the whole model 1 ms more than its layers."""
    params = sum(p.numel() for p in module.parameters()) / 1000
    if isinstance(module, nn.Sequential) and x.shape[-1] >= 28:
        return 1000.0
    return params + (0.0 if isinstance(module, (nn.Conv2d, nn.Linear, nn.Sequential)) else 1.0)


def _timed(resnet, example, table, kind: str, fraction: float, allocator: str = "") -> Problem:
    times = LayerTimes(resnet[0], example, folder=None, timer=_stub_timer)
    return _problem(resnet, example, table, kind, fraction, allocator, times)


@pytest.mark.parametrize("name", sorted(ALLOCATORS))
def test_a_latency_target_never_picks_a_layer_timed_slower_than_dense(resnet, example, table, name):
    problem = _timed(resnet, example, table, "latency", 0.6, name)
    result = allocate(name, problem)
    times = problem.times
    slow = [layer for layer in table["layer"].unique() if layer and times._inputs[layer].shape[-1] >= 28]
    assert slow and not set(slow) & set(result.plan.layers)
    for layer, entry in result.plan.layers.items():
        assert times.of(layer, entry.method, entry.rank) < times.dense(layer)
    swapped = sum(times.of(layer, e.method, e.rank) - times.dense(layer) for layer, e in result.plan.layers.items())
    assert result.base == times.model_ms() and result.cost == pytest.approx(result.base + swapped)
    assert result.latency_ms == pytest.approx(result.cost)
    if name != "vbmf":
        assert result.met


def test_a_flops_target_reports_the_latency_it_will_cost(resnet, example, table):
    result = allocate("rankscope", _timed(resnet, example, table, "flops", 0.5))
    assert result.met and result.latency_ms is not None and result.base_latency_ms > 0
    assert "latency" in result.summary() and result.latency_ms != result.base_latency_ms


@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.75])
def test_rankscope_loses_no_more_loss_than_greedy(resnet, example, table, fraction):
    ours = allocate("rankscope", _problem(resnet, example, table, "flops", fraction))
    aimet = allocate("greedy", _problem(resnet, example, table, "flops", fraction))
    assert ours.met and aimet.met
    assert ours.delta_loss <= aimet.delta_loss + 1e-12, (ours.summary(), aimet.summary())


def test_uniform_uses_one_fraction_everywhere(resnet, example, table):
    result = allocate("uniform", _problem(resnet, example, table, "params", 0.5))
    fraction = float(result.note.split()[-1])
    for layer, entry in result.plan.layers.items():
        module = resnet[0].get_submodule(layer)
        want = rank_at(get_method(entry.method), module, fraction)
        assert entry.rank == want


def test_an_unreachable_target_returns_the_closest_plan_and_says_so(resnet, example, table):
    for name in ("rankscope", "greedy", "uniform", "energy"):
        result = allocate(name, _problem(resnet, example, table, "params", 0.01))
        assert not result.met and "target missed" in result.note, name
        assert validate_plan(result.plan, resnet[0]) == []


def test_allocators_that_need_a_table_say_so(resnet, example):
    from core.errors import RankscopeError

    with pytest.raises(RankscopeError, match="greedy allocator needs a sweep table"):
        allocate("greedy", Problem(resnet[0], "fmnist-resnet", example, Target("flops", 0.5)))
    with pytest.raises(RankscopeError, match="latency target needs the layers' timings"):
        Problem(resnet[0], "fmnist-resnet", example, Target("latency", 0.5))
    with pytest.raises(RankscopeError, match="unknown allocator 'greedyy'"):
        allocate("greedyy", Problem(resnet[0], "fmnist-resnet", example, Target("flops", 0.5)))


def test_lower_hull_keeps_the_falling_convex_part():
    points = [Option(None, 10, 0.0, 0), Option(("svd", 1), 1, 5.0, 0), Option(("svd", 2), 2, 2.0, 0),
              Option(("svd", 3), 3, 1.8, 0), Option(("svd", 4), 4, 0.5, 0), Option(("svd", 5), 12, 0.1, 0)]
    assert [o.cost for o in lower_hull(points)] == [1, 2, 4, 10]  # 3 lies above the 2-4 segment, 12 costs more than dense


def test_a_new_fraction_of_the_same_kind_reprices_the_problem_and_another_kind_is_refused(resnet, example, table):
    from core.errors import RankscopeError

    problem = _problem(resnet, example, table, "flops", 0.5)
    first = allocate("uniform", problem)
    problem.target = Target("flops", 0.25)
    second = allocate("uniform", problem)
    assert first.ratio <= 0.5 and second.ratio <= 0.25 < first.ratio and second.target.fraction == 0.25
    problem.target = Target("params", 0.5)
    with pytest.raises(RankscopeError, match="these costs are in flops"):
        allocate("uniform", problem)

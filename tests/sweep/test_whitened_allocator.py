"""The whitened allocator: per-matrix aa_svd ranks from the whitened spectrum's closed-form truncation loss, within a
parameter budget, losing no more summed loss than one uniform rank fraction at the same budget; the absolute and
fisher weightings of the same losses."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from core.decompose import get_method
from core.errors import RankscopeError
from core.plan import validate_plan
from core.sweep.allocate import allocate
from core.sweep.budget import Problem, Target
from core.sweep.whitened import output_fisher, truncation_losses, whitened, whitened_losses

LAYERS = ("0", "2", "4")


@pytest.fixture(scope="module")
def net_and_data():
    """A seeded 3-Linear MLP and 256 anisotropic inputs (a few strong directions: whitening matters)."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(24, 48), nn.ReLU(), nn.Linear(48, 40), nn.ReLU(), nn.Linear(40, 32)).eval()
    mix = torch.randn(24, 24, generator=g) * torch.logspace(0, -2, 24).unsqueeze(1)
    x = torch.randn(256, 24, generator=g) @ mix
    return net, TensorDataset(x, torch.zeros(256, dtype=torch.int64))


def _problem(net, data, fraction: float) -> Problem:
    return Problem(net, "mlp", data.tensors[0][:1], Target("params", fraction), layers={p: ["aa_svd"] for p in LAYERS},
                   data=data)


def _summed(losses: dict[str, list[float]], plan) -> float:
    return sum(losses[p][e.rank] for p, e in plan.layers.items())


def test_losses_are_the_relative_output_error_of_the_built_layer(net_and_data):
    net, data = net_and_data
    losses = whitened_losses(net, list(LAYERS), data, damping=1e-9, weighting="relative")
    x = data.tensors[0]
    inputs = {"0": x, "2": net[:2](x), "4": net[:4](x)}
    for path in LAYERS:
        module, X = net.get_submodule(path), inputs[path]
        full = get_method("aa_svd").max_rank(module)
        assert len(losses[path]) == full + 1 and losses[path][full] == pytest.approx(0.0, abs=1e-9)
        assert all(a >= b - 1e-12 for a, b in zip(losses[path], losses[path][1:]))  # falls with the rank
        dense = nn.functional.linear(X, module.weight).double()
        for rank in (1, 5, 12):
            built = get_method("aa_svd").build(module, rank, calibration=X, damping=1e-9)
            with torch.no_grad():
                err = (module(X).double() - built(X).double()).norm() ** 2 / dense.norm() ** 2
            assert losses[path][rank] == pytest.approx(float(err), rel=1e-3, abs=1e-7)


@pytest.mark.parametrize("fraction", [0.35, 0.5, 0.7])
def test_meets_the_budget_and_loses_no_more_than_uniform(net_and_data, fraction):
    net, data = net_and_data
    problem = _problem(net, data, fraction)
    losses = whitened_losses(net, list(LAYERS), data, weighting="relative")
    ours = whitened(problem, losses, points=64)  # every rank offered, as uniform may pick any
    assert validate_plan(ours.plan, net) == []
    assert ours.met and ours.ratio <= fraction and ours.ratio > fraction - 0.1, ours.summary()
    assert {e.method for e in ours.plan.layers.values()} == {"aa_svd"}
    uniform = allocate("uniform", _problem(net, data, fraction))
    assert uniform.met and {e.method for e in uniform.plan.layers.values()} <= {"aa_svd"}
    assert _summed(losses, ours.plan) <= _summed(losses, uniform.plan) + 1e-12
    assert whitened(problem, points=64, weighting="relative").plan == ours.plan  # the same losses from problem.data
    coarse = whitened(problem)  # the default grid: within budget too
    assert coarse.met and coarse.ratio <= fraction


def test_refuses_without_data_or_aa_svd(net_and_data):
    net, data = net_and_data
    problem = _problem(net, data, 0.5)
    problem.data = None
    with pytest.raises(RankscopeError, match="calibration data"):
        whitened(problem)
    plain = Problem(net, "mlp", data.tensors[0][:1], Target("params", 0.5), layers={p: ["svd"] for p in LAYERS}, data=data)
    with pytest.raises(RankscopeError, match="aa_svd"):
        whitened(plain)


def test_absolute_and_fisher_weightings_rescale_the_relative_losses(net_and_data):
    """``absolute`` is the relative loss times ``||W X||^2 / N``; ``fisher`` weights each output channel's error by its
    mean squared loss gradient, so with every channel's weight equal it is ``F / 2`` times ``absolute``."""
    net, data = net_and_data
    x = data.tensors[0]
    relative = whitened_losses(net, list(LAYERS), data, weighting="relative")
    absolute = whitened_losses(net, list(LAYERS), data, weighting="absolute")
    inputs = {"0": x, "2": net[:2](x).detach(), "4": net[:4](x).detach()}
    for path in LAYERS:
        module = net.get_submodule(path)
        energy = float(nn.functional.linear(inputs[path], module.weight.detach()).double().norm() ** 2) / len(x)
        assert absolute[path] == pytest.approx([v * energy for v in relative[path]], rel=1e-3, abs=1e-9)
    flat = {path: torch.full((net.get_submodule(path).weight.shape[0],), 3.0, dtype=torch.float64) for path in LAYERS}
    fisher = truncation_losses(net, inputs, weighting="fisher", fisher=flat)
    for path in LAYERS:
        assert fisher[path] == pytest.approx([1.5 * v for v in absolute[path]], rel=1e-6, abs=1e-12)


def test_output_fisher_is_the_mean_squared_output_gradient(net_and_data):
    net, data = net_and_data
    fisher = output_fisher(net, list(LAYERS), data)
    x, y = data.tensors
    out = net[:4](x).detach().requires_grad_(True)  # the last layer's input; its output is the logits
    logits = net[4](out)
    (grad,) = torch.autograd.grad(nn.functional.cross_entropy(logits, y, reduction="sum"), logits)
    assert fisher["4"] == pytest.approx((grad.double() ** 2).mean(0).tolist(), rel=1e-5)
    assert all(f.shape == (net.get_submodule(p).weight.shape[0],) and bool((f >= 0).all()) for p, f in fisher.items())
    assert all(p.requires_grad for p in net.parameters())  # flags restored
    with pytest.raises(RankscopeError, match="targets"):
        output_fisher(net, list(LAYERS), x)


def test_fisher_weighting_allocates_within_the_budget(net_and_data):
    net, data = net_and_data
    problem = _problem(net, data, 0.5)
    losses = whitened_losses(net, list(LAYERS), data)  # the default weighting: fisher
    assert all(losses[p][0] >= losses[p][-1] == 0.0 for p in LAYERS)
    ours = whitened(problem, points=64)
    assert ours.met and ours.ratio <= 0.5 and validate_plan(ours.plan, net) == []
    assert _summed(losses, ours.plan) <= _summed(losses, allocate("uniform", _problem(net, data, 0.5)).plan) + 1e-12
    with pytest.raises(RankscopeError, match="weighting"):
        whitened_losses(net, list(LAYERS), data, weighting="other")

"""Sweep proxies: the identities each one claims, the table shape the allocators take, caching and bad input."""
from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from core.decompose import get_method
from core.decompose.activation_aware import input_gram, whitened_svd
from core.decompose.tucker2 import unfold
from core.errors import RankscopeError
from core.evaluate.cached import LayerEvaluator
from core.sweep import PROXIES, SweepCache, allocate, proxy_table, sweep_grid
from core.sweep import proxies
from core.sweep.budget import Problem, Target
from core.sweep.knapsack import SPECTRUM_POINTS, spectrum_options
from core.sweep.table import DENSE, MODEL, columns
from core.task import get_task


class Tiny(nn.Module):
    """A conv, a ReLU and a classifier on 1x6x6 images: small enough for float64 and exact identities."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.fc = nn.Linear(6 * 6 * 6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def tiny(dtype: torch.dtype = torch.float64, samples: int = 48) -> tuple[nn.Module, TensorDataset]:
    gen = torch.Generator().manual_seed(0)
    model = Tiny().to(dtype)
    images = torch.randn(samples, 1, 6, 6, generator=gen, dtype=dtype)
    labels = torch.randint(0, 5, (samples,), generator=gen)
    return model.eval(), TensorDataset(images, labels)


def with_spectrum(matrix: torch.Tensor, smallest: float) -> torch.Tensor:
    """``matrix`` (m, n) with its smallest singular value set to ``smallest`` times its largest."""
    U, S, Vh = torch.linalg.svd(matrix, full_matrices=False)
    S = S.clone()
    S[-1] = smallest * S[0]
    return U @ torch.diag(S) @ Vh


def points(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["method"] != DENSE].reset_index(drop=True)


# --- whitened ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_the_whitened_tail_is_the_exact_output_error_of_whitened_truncation(kind):
    """SVD-LLM: with S S^T = X^T X, sum_{i>r} sigma_i(W S)^2 = ||(W - W_r) X||^2 for the rank-r whitened truncation."""
    torch.manual_seed(0)
    if kind == "linear":
        layer, inputs = nn.Linear(12, 8).double(), torch.randn(64, 12, dtype=torch.float64)
    else:
        layer, inputs = nn.Conv2d(3, 6, 3, padding=1).double(), torch.randn(8, 3, 6, 6, dtype=torch.float64)
    power = whitened_svd(layer, inputs, damping=0.0).S[0] ** 2
    with torch.no_grad():
        for rank in (1, 3, 5):
            built = get_method("aa_svd").build(layer, rank, calibration=inputs, damping=0.0)
            measured = float(((built(inputs) - layer(inputs)) ** 2).sum())  # the bias cancels: (W_r - W) X
            assert float(power[rank:].sum()) == pytest.approx(measured, rel=1e-5)


def test_whitened_rows_are_the_relative_output_errors_of_the_built_layers():
    """svd, tucker2, spatial_svd: ||dW X||^2 / ||W X||^2 exactly; aa_svd (damped): plus damping * ||dW||^2."""
    model, data = tiny()
    full = proxy_table(model, data, "whitened", methods=["svd", "tucker2", "spatial_svd", "aa_svd"], points=3)
    table, base = points(full), float(full["loss"].iloc[0])
    assert set(table["method"]) == {"svd", "tucker2", "spatial_svd", "aa_svd"}
    images = data.tensors[0]
    inputs = {"conv": images, "fc": torch.relu(model.conv(images)).flatten(1).detach()}
    for row in table.itertuples():
        layer, method, x = model.get_submodule(row.layer), get_method(row.method), inputs[row.layer]
        rank = method.validate_rank(layer, tuple(int(v) for v in row.rank.split("x")))
        with torch.no_grad():
            if row.method == "aa_svd":
                built = method.build(layer, rank, calibration=x, damping=proxies.aa_damping())
            else:
                built = method.build(layer, rank)
            error = float(((built(x) - layer(x)) ** 2).sum())  # ||dW X||^2: the bias cancels
            dense = float(((layer(x) - layer(torch.zeros_like(x))) ** 2).sum())  # ||W X||^2
        if row.method == "aa_svd":
            gram = input_gram(layer, x)
            lam = proxies.aa_damping() * float(gram.diagonal().mean())
            first, second = built[0].weight.detach(), built[1].weight.detach()
            W = layer.weight.detach().reshape(len(second), -1)  # (O, D)
            dW = second.reshape(len(second), -1) @ first.reshape(len(first), -1) - W
            error += lam * float((dW ** 2).sum())
        assert row.loss - base == pytest.approx(error / dense, rel=1e-6)


# --- taylor --------------------------------------------------------------------------------------------------------


def test_taylor_predicts_the_loss_change_of_a_small_truncation_to_first_order():
    """Dropping a component of 1e-4 of the largest singular value (fc: SVD; conv: Tucker-2's output mode): the
    predicted and the measured change of the mean cross-entropy (float64) agree within 0.5 %."""
    model, data = tiny(samples=64)
    with torch.no_grad():
        model.fc.weight.copy_(with_spectrum(model.fc.weight, 1e-4))
        W0 = unfold(model.conv.weight, 0)  # (O, C kh kw): Tucker-2's output-channel mode
        model.conv.weight.copy_(with_spectrum(W0, 1e-4).reshape(model.conv.weight.shape))
    table = proxy_table(model, data, "taylor", methods=["svd", "tucker2"], points=6)
    images, labels = data.tensors

    def loss(net: nn.Module) -> float:
        with torch.no_grad():
            return float(nn.functional.cross_entropy(net(images), labels))

    for layer, method, rank, text in (("fc", "svd", 4, "4"), ("conv", "tucker2", (1, 5), "1x5")):
        row = table[(table["layer"] == layer) & (table["method"] == method) & (table["rank"] == text)]
        predicted = float(row["loss"].iloc[0]) - float(table["loss"].iloc[0])
        changed = copy.deepcopy(model)
        setattr(changed, layer, get_method(method).build(model.get_submodule(layer), rank))
        measured = loss(changed) - loss(model)
        assert abs(measured) > 1e-8  # far above float64 rounding (1e-16 of a loss near 1.6)
        assert predicted == pytest.approx(measured, rel=5e-3)  # measured here: 2e-5 (fc), 4e-4 (conv)


def test_taylor_components_sum_to_the_gradient_inner_product_with_the_weight_change():
    torch.manual_seed(0)
    for layer, method in ((nn.Conv2d(4, 6, 3, groups=2), "svd"), (nn.Conv2d(3, 5, 3), "spatial_svd"),
                          (nn.ConvTranspose2d(4, 3, 3), "svd")):
        cut = proxies.Truncation.of(layer, method)
        gradient = torch.randn(layer.weight.shape, dtype=torch.float64)
        s = proxies.component_scores(cut.factors, cut.to_layout(gradient))
        assert float(cut.delta(s.shape[1]).abs().max()) < 1e-12  # full rank changes nothing
        for rank in range(1, s.shape[1]):
            assert -float(s[:, rank:].sum()) == pytest.approx(float((gradient * cut.delta(rank)).sum()), rel=1e-9)
            rebuilt = get_method(method).matrix(_with_weight(layer, layer.weight.detach().double() + cut.delta(rank)))
            assert int(torch.linalg.matrix_rank(rebuilt, atol=1e-10).max()) == rank  # W + dW is the rank-r truncation


def _with_weight(layer: nn.Module, weight: torch.Tensor) -> nn.Module:
    changed = copy.deepcopy(layer)
    changed.weight = nn.Parameter(weight, requires_grad=False)
    return changed


# --- fisher --------------------------------------------------------------------------------------------------------


def test_fisher_rows_are_half_the_empirical_fisher_quadratic_form_of_the_weight_change():
    model, data = tiny(samples=16)
    full = proxy_table(model, data, "fisher", methods=["svd", "tucker2"], points=3)
    assert model.fc.weight.requires_grad and model.fc.weight.grad is None  # the model is left as it was
    table, base = points(full), float(full["loss"].iloc[0])
    images, labels = data.tensors
    per_sample = {"fc": [], "conv": []}
    for x, y in zip(images, labels):  # per-sample gradients, independently of the proxy's loop
        model.zero_grad()
        nn.functional.cross_entropy(model(x[None]), y[None]).backward()
        for name in per_sample:
            per_sample[name].append(model.get_submodule(name).weight.grad.detach().double().clone())
    model.zero_grad()
    for row in table.itertuples():
        module = model.get_submodule(row.layer)
        rank = int(row.rank) if row.method == "svd" else tuple(int(r) for r in row.rank.split("x"))
        dW = proxies.Truncation.of(module, row.method).delta(rank)
        if isinstance(module, nn.Linear):  # the direction is the built layer's weight change
            built = get_method("svd").build(module, rank)
            assert torch.allclose(dW, built[1].weight.double() @ built[0].weight.double() - module.weight.double())
        form = sum(float((g * dW).sum()) ** 2 for g in per_sample[row.layer]) / len(labels)
        assert row.loss - base == pytest.approx(0.5 * form, rel=1e-6), (row.layer, row.rank)
    assert set(table["layer"]) == {"fc", "conv"}


def test_fisher_takes_another_pass_when_the_directions_exceed_the_budget(monkeypatch):
    model, data = tiny(samples=16)
    whole = proxy_table(model, data, "fisher", methods=["svd", "tucker2"], points=3)
    monkeypatch.setattr(proxies, "FISHER_MB", 1e-6)  # one layer at a time
    passes = []
    original = proxies._weight_gradients
    monkeypatch.setattr(proxies, "_weight_gradients", lambda m, b, t, names, *rest: passes.append(list(names)) or
                        original(m, b, t, names, *rest))
    pd.testing.assert_frame_equal(proxy_table(model, data, "fisher", methods=["svd", "tucker2"], points=3), whole)
    assert passes == [["conv"], ["fc"]]


# --- energy --------------------------------------------------------------------------------------------------------


def test_energy_rows_are_the_spectrum_allocators_lost_energy(resnet, subset, example):
    model = resnet[0]
    full = proxy_table(model, subset, "energy", mix=True, points=SPECTRUM_POINTS)
    table, base = points(full), float(full["loss"].iloc[0])
    layers = {path: list(dict.fromkeys(rows["method"])) for path, rows in table.groupby("layer", sort=False)}
    problem = Problem(model, "fmnist-resnet", example, Target("flops", 0.5), layers=layers)
    lost = table.set_index(["layer", "method", "rank"])["loss"] - base
    compared = 0
    for layer, options in spectrum_options(problem).items():
        for option in options[1:]:
            name, rank = option.choice
            key = (layer, name, "x".join(map(str, rank)) if isinstance(rank, tuple) else str(rank))
            assert lost[key] == pytest.approx(option.loss, abs=1e-12)
            compared += 1
    assert compared > 50 and set(table["method"]) == {"tucker2", "spatial_svd", "svd"}  # tt is not covered


# --- the table -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("proxy", PROXIES)
def test_a_proxy_table_has_the_exact_sweeps_shape_and_the_table_allocators_take_it(proxy, resnet, subset, example):
    model = resnet[0]
    table = proxy_table(model, subset, proxy, points=4, batch_size=64)
    grid = sweep_grid(model, points=4)
    layers = list(dict.fromkeys(p.layer for p in grid))
    assert list(table.columns) == columns(get_task("classification")) and table.attrs["proxy"] == proxy
    assert list(zip(table["layer"], table["method"], table["rank"])) == (
        [(MODEL, DENSE, "")] + [(path, DENSE, "") for path in layers] + [tuple(p.key) for p in grid])
    dense = LayerEvaluator(model, subset).evaluate()
    assert table["loss"].iloc[0] == pytest.approx(dense.loss) and table["top1"].iloc[0] == pytest.approx(dense["top1"])
    assert (table["samples"] == len(subset)).all() and table["latency_ms"].isna().all()
    assert table["top5"].iloc[len(layers) + 1:].isna().all()
    if proxy != "taylor":  # taylor is signed; the others predict increases
        assert (points(table)["loss"] >= table["loss"].iloc[0] - 1e-12).all()
    for allocator in ("greedy", "rankscope"):
        result = allocate(allocator, Problem(model, "fmnist-resnet", example, Target("params", 0.8), table))
        assert result.met and result.plan.layers


def test_proxy_tables_are_cached_apart_from_exact_rows_and_read_back(resnet, subset, tmp_path, monkeypatch):
    model, cache = resnet[0], SweepCache("fashion-mnist:64:0", tmp_path)
    first = proxy_table(model, subset, "whitened", layers=["fc", "layer3.0.conv2"], points=3, cache=cache)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names and all("fashion-mnist-64-0-whitened-d0.01_" in n for n in names)
    monkeypatch.setattr(proxies, "gather", lambda *a, **k: pytest.fail("a cached proxy table was recomputed"))
    again = proxy_table(model, subset, "whitened", layers=["fc", "layer3.0.conv2"], points=3, cache=cache)
    pd.testing.assert_frame_equal(first, again)
    assert again.attrs["proxy"] == "whitened"


def test_aa_svd_is_scored_only_when_named_and_where_it_applies(resnet):
    model = resnet[0]
    assert "aa_svd" not in {m for ms in proxies.proxy_methods(model, "whitened").values() for m in ms}
    named = proxies.proxy_methods(model, "whitened", methods=["svd", "aa_svd"])
    assert named["fc"] == ["svd", "aa_svd"] and named["stem.0"] == ["svd", "aa_svd"]


@pytest.mark.parametrize(("call", "message"), [
    (dict(proxy="hessian"), "unknown proxy 'hessian'"),
    (dict(proxy="energy", methods=["aa_svd"]), "the energy proxy does not score aa_svd"),
    (dict(proxy="whitened", methods=["tt"]), "the whitened proxy does not score tt"),
    (dict(proxy="taylor", task="fidelity"), "the taylor proxy differentiates the task's loss"),
    (dict(proxy="fisher", fisher_batch=0), "fisher_batch must be at least 1"),
    (dict(proxy="energy", layers=["nope"]), "no layer named 'nope'"),
])
def test_bad_input_is_a_one_line_error(call, message):
    model, data = tiny(samples=4)
    with pytest.raises(RankscopeError, match=message):
        proxy_table(model, data, points=2, **call)

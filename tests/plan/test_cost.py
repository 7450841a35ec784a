"""Plan totals from the methods' cost() equal the counts of the model apply_plan builds."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from core.decompose import applicable_methods, get_method
from core.errors import RankscopeError
from core.decompose.rank import rank_at
from core.models import create_model
from core.plan import LayerEntry, Plan, apply_plan
from core.plan.cost import Site, layer_sites, plan_cost
from core.profile import count_flops, count_params, example_input

# every data-free method on the shipped models (CP's ALS is slow on big layers: its layers are capped)
CASES = [("fmnist-resnet", "svd"), ("fmnist-resnet", "tucker2"), ("fmnist-resnet", "spatial_svd"), ("fmnist-resnet", "tt"),
         ("fmnist-resnet", "cp"), ("fmnist-vit", "svd"), ("fmnist-capsnet", "tucker2"), ("fmnist-capsnet", "capsule_tucker")]


@pytest.fixture(scope="module")
def models():
    return {name: create_model(name) for name in {n for n, _ in CASES}}


@pytest.mark.slow  # over half a second on the 2-core machine
@pytest.mark.parametrize(("name", "method"), CASES)
def test_totals_equal_counts_of_the_applied_model(models, name, method):
    model, cfg = models[name]
    x = example_input(cfg, 1)
    paths = [p for p, m in model.named_modules() if method in applicable_methods(m)]
    if method == "cp":
        paths = [p for p in paths if model.get_submodule(p).weight.numel() <= 16 * 16 * 9][:2]
    layers = {}
    for i, path in enumerate(paths):
        module = model.get_submodule(path)
        rank = rank_at(get_method(method), module, (0.2, 0.5, 0.8)[i % 3])
        layers[path] = LayerEntry(method, list(rank) if isinstance(rank, tuple) else rank)
    plan = Plan(name, layers)
    cost = plan_cost(model, plan, layer_sites(model, x, paths), count_params(model), int(count_flops(model, x).per_sample))
    compressed, _ = apply_plan(model, plan)
    assert cost.params == count_params(compressed)
    assert cost.flops == count_flops(compressed, x).per_sample
    assert list(cost.layers["name"]) == paths


def test_linear_layers_are_priced_per_token():
    model, cfg = create_model("fmnist-vit")
    sites = layer_sites(model, example_input(cfg, 1), ["blocks.0.attn.qkv", "head", "patch_embed.proj"])
    assert sites["blocks.0.attn.qkv"] == Site(None, 50, 1)  # 49 patches + the class token
    assert sites["head"] == Site(None, 1, 1)
    assert sites["patch_embed.proj"] == Site((28, 28), 1, 1)


def test_sites_need_one_sample_and_a_called_module():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    model.register_module("unused", nn.Linear(2, 2))
    model.forward = lambda x: model[1](model[0](x))  # the Sequential would call every child
    with pytest.raises(RankscopeError, match="batch of one"):
        layer_sites(model, torch.zeros(2, 4), ["0"])
    with pytest.raises(RankscopeError, match="unused is not called"):
        layer_sites(model, torch.zeros(1, 4), ["unused"])
    with pytest.raises(RankscopeError, match="no recorded site"):
        plan_cost(model, Plan("m", {"1": LayerEntry("svd", 1)}), {}, 0, 0)

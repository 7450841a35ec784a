"""LayerEvaluator: the cached-activation path gives exactly the full forward pass's numbers, and skips the prefix."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from core.data import eval_subset, load_dataset
from core.decompose import get_method
from core.errors import RankscopeError
from core.evaluate.cached import LayerEvaluator, split_model
from core.decompose.rank import rank_at
from core.models import create_model
from core.profile import Cancelled, evaluate

SHIPPED = {
    "fmnist-resnet": ("stem.0", "layer2.0.conv1", "layer2.0.downsample.0", "layer3.0.conv2", "fc"),
    "fmnist-vit": ("patch_embed.proj", "blocks.1.attn.qkv", "blocks.3.mlp.fc2", "head"),
    "fmnist-capsnet": ("features.3", "primary", "digits"),
}


@pytest.fixture(scope="module", params=sorted(SHIPPED))
def shipped(request):
    model, cfg = create_model(request.param)
    dataset = eval_subset(load_dataset("fashion-mnist", cfg), 96)
    return request.param, model, dataset, LayerEvaluator(model, dataset, batch_size=40)  # 3 batches, the last short


def _quarter_rank(model: nn.Module, path: str) -> nn.Module:
    module = model.get_submodule(path)
    method = get_method("capsule_tucker" if path == "digits" else "svd")
    return method.build(module, rank_at(method, module, 0.25))


def test_unchanged_model_scores_as_core_profile_evaluate(shipped):
    _, model, dataset, evaluator = shipped
    assert evaluator.evaluate() == evaluate(model, dataset, batch_size=40)


@pytest.mark.slow  # over a second on the 2-core machine
def test_cached_path_equals_full_forward_for_every_layer(shipped):
    name, model, _, evaluator = shipped
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for path in SHIPPED[name]:
        replacement = _quarter_rank(model, path)
        assert evaluator.path_for([path]) == "cached"
        cached = evaluator.evaluate({path: replacement}, path="cached")
        again = evaluator.evaluate({path: replacement}, path="cached")  # served from the activation cache
        full = evaluator.evaluate({path: replacement}, path="full")
        assert cached == again == full, path
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert evaluator.evaluate() == evaluate(model, evaluator_dataset(evaluator), batch_size=40)


def evaluator_dataset(evaluator: LayerEvaluator) -> TensorDataset:
    return TensorDataset(torch.cat([x for x, _ in evaluator.batches]), torch.cat([y for _, y in evaluator.batches]))


def test_several_layers_at_once_equal_the_full_forward(shipped):
    name, model, _, evaluator = shipped
    paths = SHIPPED[name][1:3]
    replacements = {p: _quarter_rank(model, p) for p in paths}
    assert evaluator.evaluate(replacements) == evaluator.evaluate(replacements, path="full")


def test_the_suffix_skips_what_comes_before_the_layer():
    model, _ = create_model("fmnist-resnet")
    cut = split_model(model, ["fc"])
    called = [n.target for n in cut.suffix.graph.nodes if n.op == "call_module"]
    assert called == ["rankscope_slot_0"]  # only the swapped layer runs: no conv, no batch norm
    cut = split_model(model, ["layer3.0.conv2"])
    convs = [n.target for n in cut.suffix.graph.nodes if n.op == "call_module" and "conv" in n.target]
    assert convs == []  # layer3.0.conv1 and the shortcut conv are before the cut: their outputs are cached


def test_each_batch_goes_through_the_prefix_once():
    model = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 4)).eval()
    evaluator = LayerEvaluator(model, _toy_data(50), batch_size=20)  # 3 batches, labelled: no reference pass
    seen: list[int] = []
    model[0].register_forward_hook(lambda _m, args, _out: seen.append(len(args[0])))
    replacement = nn.Linear(6, 4)
    first = evaluator.evaluate({"2": replacement}, path="cached")  # the budget check's batch is kept, not rerun
    assert seen == [20, 20, 10]
    assert evaluator.evaluate({"2": replacement}, path="cached") == first and seen == [20, 20, 10]


class WritesIntoFrontier(nn.Module):
    """``h`` is computed before ``b`` and read after it, where ``h += ...`` writes into it in place."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b, self.c = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        h += self.b(h)
        return self.c(h)


def _toy_data(n: int = 50, features: int = 6) -> TensorDataset:
    g = torch.Generator().manual_seed(1)
    return TensorDataset(torch.randn(n, features, generator=g), torch.randint(0, 4, (n,), generator=g))


def test_a_layer_writing_into_cached_activations_does_not_corrupt_them():
    model = WritesIntoFrontier().eval()
    evaluator = LayerEvaluator(model, _toy_data(), batch_size=16)
    replacement = get_method("svd").build(model.b, 2)
    runs = [evaluator.evaluate({"b": replacement}) for _ in range(3)]
    assert runs[0] == runs[1] == runs[2] == evaluator.evaluate({"b": replacement}, path="full")


class Branchy(nn.Module):
    """Control flow on tensor values: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(6, 6), nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        return self.b(h if h.sum() > 0 else -h)


def test_untraceable_models_fall_back_to_the_full_forward():
    model = Branchy().eval()
    evaluator = LayerEvaluator(model, _toy_data(), batch_size=16)
    assert evaluator.path_for(["b"]).startswith("full: Branchy does not trace")
    replacement = get_method("svd").build(model.b, 2)
    assert evaluator.evaluate({"b": replacement}) == evaluator.evaluate({"b": replacement}, path="full")
    with pytest.raises(RankscopeError, match="cannot evaluate b from cached activations"):
        evaluator.evaluate({"b": replacement}, path="cached")


def test_a_cut_over_the_cache_budget_runs_the_full_forward():
    model = WritesIntoFrontier().eval()
    evaluator = LayerEvaluator(model, _toy_data(), batch_size=16, cache_mb=1e-4)
    assert "budget" in evaluator.path_for(["b"])
    assert evaluator.evaluate({"b": get_method("svd").build(model.b, 3)}).samples == 50
    assert evaluator.cached_mb() == 0


def test_progress_and_cancel():
    model = WritesIntoFrontier().eval()
    evaluator = LayerEvaluator(model, _toy_data(), batch_size=16)
    seen: list[tuple[int, int]] = []
    evaluator.evaluate({"c": get_method("svd").build(model.c, 2)}, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    with pytest.raises(Cancelled, match="after 0 of 50"):
        evaluator.evaluate(cancel=lambda: True)


def test_bad_arguments_are_one_line_errors():
    model = WritesIntoFrontier().eval()
    evaluator = LayerEvaluator(model, _toy_data(), batch_size=16)
    with pytest.raises(RankscopeError, match="path 'fast'"):
        evaluator.evaluate(path="fast")
    assert evaluator.path_for(["nope"]) == "full: no module named nope in the model"
    with pytest.raises(RankscopeError, match="empty"):
        LayerEvaluator(model, _toy_data(0))


def _at(model: nn.Module, path: str, fraction: float) -> nn.Module:
    module = model.get_submodule(path)
    method = get_method("capsule_tucker" if path == "digits" else "svd")
    return method.build(module, rank_at(method, module, fraction))


def test_stacked_variants_score_exactly_as_one_at_a_time(shipped):
    name, model, _, evaluator = shipped
    fractions = (0.1, 0.25, 0.5, 0.75, 0.9)
    for path in SHIPPED[name]:
        variants = [_at(model, path, f) for f in fractions]
        alone = [evaluator.evaluate({path: m}) for m in variants]
        for stack in (2, 5):
            stacked = evaluator.evaluate_variants(path, variants, stack=stack)
            for a, b in zip(alone, stacked):
                assert a.values["top1"] == b.values["top1"], (name, path, stack)
                assert a.loss == pytest.approx(b.loss, rel=1e-6, abs=1e-7), (name, path, stack)


def test_stacking_variants_rejects_a_bad_stack(shipped):
    _, model, _, evaluator = shipped
    with pytest.raises(RankscopeError, match="stack must be at least 1"):
        evaluator.evaluate_variants(SHIPPED[shipped[0]][0], [], stack=0)

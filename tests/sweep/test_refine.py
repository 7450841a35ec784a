"""The mixed sweep's methods, the weighted knapsack, and the refinement on measured whole-model loss."""
from __future__ import annotations

import pytest

from core.sweep.budget import Option, Problem, Target
from core.sweep.engine import layer_methods
from core.sweep.knapsack import rankscope, solve
from core.sweep.refine import JointLoss


def test_a_mixed_sweep_tries_four_methods_on_3x3_convs_and_svd_elsewhere(resnet):
    mixed = layer_methods(resnet[0], mix=True)
    assert mixed["layer1.0.conv1"] == ["tucker2", "spatial_svd", "tt", "svd"]
    assert mixed["layer2.0.downsample.0"] == ["svd"] and mixed["fc"] == ["svd"]
    assert list(mixed) == list(layer_methods(resnet[0]))


def test_weights_move_the_compression_to_the_lighter_layer():
    options = {layer: [Option(None, 1.0, 0.0, 0.9), Option(("svd", 1), 0.5, loss, 0.5)]
               for layer, loss in (("a", 1.0), ("b", 2.0))}
    assert solve(options, 1.5)["a"].choice == ("svd", 1) and solve(options, 1.5)["b"].choice is None
    weighted = solve(options, 1.5, {"a": 4.0})  # a now costs 4 in loss, b 2: compress b
    assert weighted["a"].choice is None and weighted["b"] is options["b"][1]
    assert solve(options, 0.9) is None


@pytest.mark.slow  # over half a second on the 2-core machine
@pytest.mark.parametrize("fraction", [0.5, 0.75])
def test_refinement_never_raises_the_measured_loss_and_keeps_the_target(resnet, example, table, subset, fraction):
    model = resnet[0]
    plain = rankscope(Problem(model, "fmnist-resnet", example, Target("flops", fraction), table))
    refined = rankscope(Problem(model, "fmnist-resnet", example, Target("flops", fraction), table, data=subset, evaluations=12))
    assert plain.met and refined.met and refined.ratio <= fraction
    assert "refined on measured loss" in refined.note
    evaluations = int(refined.note.split(" evaluations")[0].rsplit(" ", 1)[-1])
    assert 1 <= evaluations <= 12
    joint = JointLoss(Problem(model, "fmnist-resnet", example, Target("flops", fraction), table, data=subset))

    def measured(allocation) -> float:
        return joint({layer: Option((e.method, e.rank), 0, 0, 0)
                      for layer, e in allocation.plan.layers.items()})

    assert measured(refined) <= measured(plain)

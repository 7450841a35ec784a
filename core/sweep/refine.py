"""Refining a knapsack choice on the measured loss of the whole compressed model.

The knapsack (:mod:`core.sweep.knapsack`) adds up loss increases measured one layer at a time. With
many layers compressed their errors compound, and by different amounts: an early layer's error is
amplified by every compressed layer after it, a layer near the output is hardly affected. The
refinement measures that in context and re-solves:

1. score the whole model with every chosen layer built (:class:`JointLoss`, on ``problem.data``);
2. for each compressed layer ``i``, score it again with only that layer restored dense: its *share*
   ``r_i`` is the loss this removes; its *weight* ``w_i = r_i / d_i``, with ``d_i`` the sweep's loss
   increase of the chosen option (both floored at :data:`FLOOR`, the ratio clipped to
   ``[1 / CLIP, CLIP]``), says how much more (or less) the layer costs in context than alone;
3. re-solve the knapsack with every layer's loss increases multiplied by its weight (layers kept
   dense keep their last weight, at first 1) and score the result; if that is no better, try the
   half step (weights ``w_i ** 0.5``);
4. a choice with a lower measured loss becomes the current one and the next round starts at 2;
   otherwise, or when the evaluations left cannot pay for another round, the refinement stops.

Only choices with a measured loss below the knapsack's are ever taken, so the result is never worse
on ``problem.data`` than the knapsack's own; it costs at most ``problem.evaluations`` evaluations
(every distinct choice is scored once).
"""
from __future__ import annotations

import math
from collections.abc import Callable

from core.decompose.registry import get_method
from core.evaluate.cached import LayerEvaluator
from core.sweep.budget import Option, Problem

FLOOR = 1e-4  # loss increases below this (noise, or a gain) count as this
CLIP = 16.0  # a weight is clipped to [1 / CLIP, CLIP]
STEPS = (1.0, 0.5)  # the powers of the weights tried in each round

Chosen = dict[str, Option]


class JointLoss:
    """The mean loss of the model with a choice built, on ``problem.data``, scored once per distinct choice.

    Each evaluation is a full forward pass (:meth:`core.evaluate.cached.LayerEvaluator.evaluate` with ``path="full"``).
    """

    def __init__(self, problem: Problem) -> None:
        self.model, self.limit = problem.model, problem.evaluations
        self.evaluator = LayerEvaluator(problem.model, problem.data)
        self.scores: dict[frozenset, float] = {}

    @property
    def left(self) -> int:
        """Evaluations still allowed."""
        return self.limit - len(self.scores)

    def __call__(self, chosen: Chosen) -> float:
        """The measured loss of ``chosen`` (``inf`` when it is new and no evaluation is left)."""
        key = frozenset((layer, o.choice) for layer, o in chosen.items() if o.choice is not None)
        if key not in self.scores:
            if self.left <= 0:
                return math.inf
            built = {layer: get_method(method).build(self.model.get_submodule(layer), rank) for layer, (method, rank) in key}
            self.scores[key] = self.evaluator.evaluate(built, path="full").loss
        return self.scores[key]


def weights_in_context(joint: JointLoss, options: dict[str, list[Option]], chosen: Chosen, loss: float) -> dict[str, float]:
    """Step 2: each compressed layer's measured share of ``loss`` over its sweep increase, floored and clipped."""
    weights = {}
    for layer, option in chosen.items():
        if option.choice is not None:
            dense = next(o for o in options[layer] if o.choice is None)
            share = loss - joint(chosen | {layer: dense})
            weights[layer] = min(max(max(share, FLOOR) / max(option.loss, FLOOR), 1 / CLIP), CLIP)
    return weights


def refine(problem: Problem, options: dict[str, list[Option]], start: Chosen,
           solve: Callable[[dict[str, float]], Chosen | None]) -> tuple[Chosen, str]:
    """The choice with the lowest measured loss the rounds reach from ``start`` (see the module docstring), and a note.

    Parameters
    ----------
    problem : gives the model, ``data`` and ``evaluations``.
    options : each layer's options, as ``solve`` chooses among them (the dense option included).
    start : the knapsack's choice.
    solve : the knapsack with each layer's loss increases multiplied by the given weights (default 1).
    """
    joint = JointLoss(problem)
    best, best_loss = start, joint(start)
    first, rounds, weights = best_loss, 0, {layer: 1.0 for layer in options}
    while joint.left > sum(o.choice is not None for o in best.values()):
        weights |= weights_in_context(joint, options, best, best_loss)
        proposals = (solve({layer: w**step for layer, w in weights.items()}) for step in STEPS)
        found = next(((p, loss) for p in proposals if p is not None and (loss := joint(p)) < best_loss), None)
        if found is None:
            break
        (best, best_loss), rounds = found, rounds + 1
    return best, (f"refined on measured loss: {first:.4f} -> {best_loss:.4f} on {joint.evaluator.samples} images "
                  f"({rounds} round(s), {len(joint.scores)} evaluations)")

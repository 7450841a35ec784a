"""Rank allocators: from a model, a target and (for some) a sweep table to a :class:`core.plan.Plan`.

Each allocator is a function ``(Problem) -> Allocation`` registered in :data:`ALLOCATORS`:

- ``uniform``: one rank fraction for every layer (:func:`core.layers.study.rank_at`), bisected to meet the target;
- ``energy``: one energy threshold for every layer (:func:`core.decompose.rank.energy_rank`), bisected;
- ``vbmf``: each layer's empirical-VBMF rank (:func:`core.decompose.rank.vbmf_rank`) as it is; the target
  is only reported against;
- ``greedy``: AIMET's greedy compression-ratio selection on the sweep table (:func:`greedy`);
- ``rankscope``: a multiple-choice knapsack on the sweep table's loss increases, over all of a layer's swept
  methods, refined on measured whole-model losses when the problem has ``data`` (:mod:`core.sweep.knapsack`);
- ``spectrum``: the same knapsack on the weight energy each rank drops, over all of a layer's methods with
  singular values: no table and no data, for real-sized networks in seconds;
- ``whitened``: per-layer ``aa_svd`` ranks from each rank's whitened truncation loss on the problem's calibration
  ``data`` (:mod:`core.sweep.whitened`); :func:`core.budget.compress_to_budget` runs it with the post-training steps.

The first three use each layer's first method (``default_method`` unless the problem names others) and
round their ranks to ``problem.multiple``; greedy and rankscope choose among the table's points. A layer whose chosen rank would cost no less than the dense
layer is kept dense. When a target cannot be met the most compressed allocation the rule reaches is
returned, with ``met`` false and the reason in ``note``.
"""
from __future__ import annotations

from collections.abc import Callable

from core.decompose.rank_rules import energy_rank, vbmf_rank
from core.decompose.registry import get_method
from core.errors import RankscopeError, close_matches_hint
from core.decompose.rank import Rank, rank_at, round_rank
from core.sweep.budget import Allocation, Choice, Option, Problem, finish, table_options
from core.sweep.knapsack import rankscope, spectrum
from core.sweep.whitened import whitened

RATIOS = tuple(i / 10 for i in range(1, 10))  # AIMET's default candidates: 10 ratios, less the uncompressed 1.0
STEPS = 40  # bisection steps of a continuous knob: 2**-40 of its range


def _first_methods(problem: Problem) -> dict[str, str]:
    return {layer: methods[0] for layer, methods in problem.layers.items()}


def _bisect(problem: Problem, choose: Callable[[float], Choice], what: str, lowest: float) -> tuple[Choice, str]:
    """The choice at the largest knob in ``[lowest, 1]`` within budget (cost is non-decreasing in the knob)."""
    costs = problem.costs
    if costs.total(choose(1.0)) <= costs.budget:
        return choose(1.0), f"{what} 1"
    if costs.total(choose(lowest)) > costs.budget:
        return choose(lowest), f"{what} {lowest:g} (its smallest) is as far as this rule goes: target missed"
    lo, hi = lowest, 1.0
    for _ in range(STEPS):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if costs.total(choose(mid)) <= costs.budget else (lo, mid)
    return choose(lo), f"{what} {lo:.4f}"


def _rounded(problem: Problem, layer: str, method: str, rank: Rank) -> tuple[str, Rank]:
    return method, round_rank(get_method(method), problem.model.get_submodule(layer), rank, problem.multiple)


def uniform(problem: Problem) -> Allocation:
    """One rank fraction ``f`` for every layer (each mode keeps ``f`` of its full rank), the largest within budget."""
    methods = _first_methods(problem)

    def choose(fraction: float) -> Choice:
        return {layer: _rounded(problem, layer, m, rank_at(get_method(m), problem.model.get_submodule(layer), fraction))
                for layer, m in methods.items()}

    choice, note = _bisect(problem, choose, "rank fraction", 1e-9)
    return finish(problem, choice, "uniform", note)


def energy(problem: Problem) -> Allocation:
    """The largest energy threshold whose per-layer ranks (smallest keeping that share of squared singular values) fit."""
    methods = _first_methods(problem)

    def choose(kept: float) -> Choice:
        return {layer: _rounded(problem, layer, m, energy_rank(problem.model.get_submodule(layer), m, kept))
                for layer, m in methods.items()}

    choice, note = _bisect(problem, choose, "energy", 1e-9)
    return finish(problem, choice, "energy", note)


def vbmf(problem: Problem) -> Allocation:
    """Each layer at its empirical-VBMF rank; the target is not steered towards, only compared with."""
    choice = {layer: _rounded(problem, layer, m, vbmf_rank(problem.model.get_submodule(layer), m))
              for layer, m in _first_methods(problem).items()}
    cost = problem.costs.total(choice)
    note = "VBMF ranks as they are" + ("" if cost <= problem.costs.budget else ": they do not meet the target")
    return finish(problem, choice, "vbmf", note)


def greedy(problem: Problem) -> Allocation:
    """Qualcomm AIMET's greedy compression-ratio selection, on the sweep table.

    Per layer (with its first method), each candidate ratio ``c`` in 0.1 .. 0.9 maps to the swept rank with
    the largest cost at most ``c`` times the dense layer's (the best headline score among equal costs); its score is
    the table's headline metric (top-1 for classification) with only that layer compressed. For a level ``a`` every layer takes the
    smallest ratio whose score is at least ``a`` (dense if none); the highest level whose model meets the
    target is found by binary search over the scores (the cost falls as the level falls).

    References
    ----------
    Qualcomm AIMET, ``aimet_common/comp_ratio_select.py``: ``GreedyCompRatioSelectAlgo``
    (``_find_all_comp_ratios_given_eval_score``, ``_find_layer_comp_ratio_given_eval_score``).
    """
    options, methods, costs = table_options(problem, "greedy"), _first_methods(problem), problem.costs
    candidates: dict[str, list[Option]] = {}  # per layer, by increasing ratio
    for layer, opts in options.items():
        mine = [o for o in opts if o.choice is not None and o.choice[0] == methods[layer]]
        candidates[layer] = []
        for ratio in RATIOS:
            fits = [o for o in mine if o.cost <= ratio * costs.dense(layer)]
            if fits:
                candidates[layer].append(max(fits, key=lambda o: (o.cost, o.score)))
    levels = sorted({o.score for found in candidates.values() for o in found}, reverse=True)
    if not levels:
        return finish(problem, {}, "greedy", "no swept rank is below 0.9 of its layer's cost: nothing to compress")

    def choose(level: float) -> Choice:
        return {layer: next((o.choice for o in found if o.score >= level), None) for layer, found in candidates.items()}

    if costs.total(choose(levels[-1])) > costs.budget:
        return finish(problem, choose(levels[-1]), "greedy", "every layer at its most aggressive candidate: target missed")
    lo, hi = 0, len(levels) - 1  # levels[hi] fits; find the smallest index (highest level) that fits
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if costs.total(choose(levels[mid])) <= costs.budget else (mid + 1, hi)
    return finish(problem, choose(levels[lo]), "greedy", f"accuracy level {levels[lo]:.4f}")


WHITENED = "whitened"
ALLOCATORS: dict[str, Callable[[Problem], Allocation]] = {
    WHITENED: whitened,
    "rankscope": rankscope, "greedy": greedy, "uniform": uniform, "energy": energy, "vbmf": vbmf, "spectrum": spectrum,
}
NEEDS_TABLE = ("rankscope", "greedy")


def allocate(name: str, problem: Problem) -> Allocation:
    """Run the allocator registered as ``name`` on ``problem``."""
    if name not in ALLOCATORS:
        raise RankscopeError(f"unknown allocator {name!r}{close_matches_hint(name, list(ALLOCATORS))}; "
                             f"known: {', '.join(ALLOCATORS)}")
    return ALLOCATORS[name](problem)

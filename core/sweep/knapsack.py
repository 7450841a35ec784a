"""The rankscope allocator: a multiple-choice knapsack on the sweep's loss increases, refined on measured losses.

Each layer takes exactly one option: kept dense (loss increase 0, its dense cost) or one swept
``(method, rank)`` of the table, of any of the layer's methods (the mixed sweep,
:data:`core.sweep.engine.MIX`, gives a 3x3 conv Tucker-2, spatial SVD, TT and SVD; at the same FLOPs
they differ in error layer by layer, so mixing them is most of what the allocator gains), with
``loss increase = the table's loss with only that layer changed - the dense model's loss`` and its cost
in the target's kind (params, FLOPs or measured latency, :mod:`core.sweep.budget`). Loss is used rather
than top-1: it moves with every rank, where top-1 on a subset moves in steps and ties.

Minimise ``sum w_i loss_i`` subject to ``sum cost_i <= budget`` (:func:`solve`; the weights ``w_i`` are 1
unless the refinement sets them):

1. Lagrangian relaxation. For a price ``lam >= 0`` on cost, each layer independently takes the option
   minimising ``loss + lam * cost``; that minimiser always lies on the lower convex hull of the layer's
   ``(cost, loss)`` points, so only the hull is searched (ties go to the cheaper option). The total cost
   falls as ``lam`` rises: ``lam`` is bisected to the smallest price whose choice fits the budget.
2. Greedy fill. The relaxation leaves budget unused (its solutions jump between hull vertices), so
   while some layer can move to an option with a smaller loss that still fits, the move with the largest
   loss saved per unit of extra cost is made (any point of the table, not just the hull).
3. Pair exchange. Then, while changing two layers at once (one up, one down) lowers the summed loss
   and still fits, the best such pair move is made.
4. Refinement (when the problem has ``data``, :mod:`core.sweep.refine`). The increases are not additive:
   with many layers compressed their errors compound, by different amounts per layer. The whole
   compressed model is scored on ``data``, and again with each compressed layer restored dense; each
   layer's measured share of the loss over its sweep increase becomes its weight, steps 1-3 are re-run
   with the weights, and the new choice is kept only if its measured loss is lower. Rounds repeat within
   ``problem.evaluations`` whole-model evaluations.

Costs are divided by the dense model's total, so ``lam`` is in loss per model.

The ``spectrum`` allocator runs steps 1-3 on a data-free loss instead of the sweep's: the weight energy each
rank drops (:func:`spectrum_options`). It needs no data and no table, so it plans a real-sized network in
seconds; under a latency target its options are the layers' measured timings.
"""
from __future__ import annotations

from dataclasses import replace
from itertools import combinations

from core.decompose.rank import rank_grid, rank_values
from core.decompose.registry import get_method
from core.layers.study import spectra
from core.sweep.budget import Allocation, Option, Problem, finish, table_options
from core.sweep.refine import refine

PRICE_STEPS = 60  # bisection steps on the price (log scale)
SPECTRUM_POINTS = 8  # ranks per layer and method the spectrum allocator chooses among


def lower_hull(options: list[Option]) -> list[Option]:
    """The options on the falling part of the lower convex hull of ``(cost, loss)``, by increasing cost."""
    hull: list[Option] = []
    for o in sorted(options, key=lambda o: (o.cost, o.loss)):
        if hull and o.loss >= hull[-1].loss:
            continue  # costs more and loses no less than a cheaper option: never a minimiser for lam >= 0
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            if (b.loss - a.loss) * (o.cost - a.cost) >= (o.loss - a.loss) * (b.cost - a.cost):
                hull.pop()  # b is on or above the segment a-o
            else:
                break
        hull.append(o)
    return hull


def _priced(hulls: dict[str, list[Option]], price: float) -> dict[str, Option]:
    return {layer: min(hull, key=lambda o: (o.loss + price * o.cost, o.cost)) for layer, hull in hulls.items()}


def _spent(chosen: dict[str, Option]) -> float:
    return sum(o.cost for o in chosen.values())


def _relax(hulls: dict[str, list[Option]], budget: float) -> dict[str, Option] | None:
    """The relaxation's choice at the smallest price that fits ``budget`` (``None`` if no price does)."""
    if _spent(_priced(hulls, 0.0)) <= budget:
        return _priced(hulls, 0.0)
    lo, hi = 1e-9, 1.0
    while _spent(_priced(hulls, hi)) > budget:
        if hi > 1e12:
            return None
        lo, hi = hi, hi * 16
    for _ in range(PRICE_STEPS):
        mid = (lo * hi) ** 0.5
        lo, hi = (lo, mid) if _spent(_priced(hulls, mid)) <= budget else (mid, hi)
    return _priced(hulls, hi)


def _fill(options: dict[str, list[Option]], chosen: dict[str, Option], budget: float) -> None:
    """Single-layer moves to a smaller loss within budget, best saving per extra cost first (in place)."""
    while True:
        left = budget - _spent(chosen)
        moves = [(chosen[layer].loss - o.loss, o.cost - chosen[layer].cost, layer, o)
                 for layer, opts in options.items() for o in opts
                 if o.loss < chosen[layer].loss and o.cost - chosen[layer].cost <= left]
        if not moves:
            return
        *_, layer, o = max(moves, key=lambda m: m[0] / m[1] if m[1] > 0 else float("inf"))
        chosen[layer] = o


def _exchange(options: dict[str, list[Option]], chosen: dict[str, Option], budget: float) -> bool:
    """Make the best two-layer move that lowers the summed loss within budget; ``False`` when there is none."""
    left = budget - _spent(chosen)
    best, move = 1e-12, None
    for a, b in combinations(options, 2):
        ca, cb = chosen[a], chosen[b]
        for oa in options[a]:
            extra_a, saved_a = oa.cost - ca.cost, ca.loss - oa.loss
            for ob in options[b]:
                saved = saved_a + cb.loss - ob.loss
                if saved > best and extra_a + ob.cost - cb.cost <= left:
                    best, move = saved, (a, oa, b, ob)
    if move is None:
        return False
    chosen[move[0]], chosen[move[2]] = move[1], move[3]
    return True


def solve(options: dict[str, list[Option]], budget: float, weights: dict[str, float] | None = None) -> dict[str, Option] | None:
    """Steps 1-3 on ``options`` (costs in model units) within ``budget``; ``None`` when no choice fits.

    ``weights`` multiplies each named layer's loss increases (default 1); the options returned are the
    given ones, unweighted.
    """
    weights = weights or {}
    weighted = {layer: [replace(o, loss=o.loss * weights.get(layer, 1.0)) for o in opts] for layer, opts in options.items()}
    chosen = _relax({layer: lower_hull(opts) for layer, opts in weighted.items()}, budget)
    if chosen is None:
        return None
    _fill(weighted, chosen, budget)
    while _exchange(weighted, chosen, budget):
        _fill(weighted, chosen, budget)
    return {layer: options[layer][weighted[layer].index(o)] for layer, o in chosen.items()}


def _scaled(problem: Problem, options: dict[str, list[Option]]) -> tuple[dict[str, list[Option]], float]:
    """``options`` with costs in model units, and the budget left for the layers they cover, in the same units."""
    costs = problem.costs
    scaled = {layer: [replace(o, cost=o.cost / costs.base) for o in opts] for layer, opts in options.items()}
    rest = costs.base - sum(costs.dense(layer) for layer in options)  # what the layers leave unchanged
    return scaled, (costs.budget - rest) / costs.base - 1e-12  # the margin absorbs rounding of the float sums


def _cheapest(problem: Problem, options: dict[str, list[Option]], allocator: str) -> Allocation:
    cheapest = {layer: min(opts, key=lambda o: (o.cost, o.loss)) for layer, opts in options.items()}
    return finish(problem, {layer: o.choice for layer, o in cheapest.items()}, allocator,
                  "every layer at its cheapest option: target missed")


def rankscope(problem: Problem) -> Allocation:
    """Least summed sweep loss increase within the target, then refined on measured losses: see the module docstring."""
    options, budget = _scaled(problem, table_options(problem, "rankscope"))
    chosen = solve(options, budget)
    if chosen is None:
        return _cheapest(problem, options, "rankscope")
    note = "Lagrangian relaxation, greedy fill, pair exchange"
    if problem.data is not None:
        chosen, refined = refine(problem, options, chosen, lambda weights: solve(options, budget, weights))
        note += f"; {refined}"
    return finish(problem, {layer: o.choice for layer, o in chosen.items()}, "rankscope", note)


def spectrum_options(problem: Problem) -> dict[str, list[Option]]:
    """Per layer: keep dense, then each of :data:`SPECTRUM_POINTS` ranks of each method with a spectrum, cheaper than
    dense, with the weight energy it loses as its loss.

    The loss of a rank is the share of squared singular values it drops, summed over the rank's modes: exactly
    the relative squared weight error of a truncated SVD, and the higher-order SVD's bound for Tucker-2
    (:func:`core.layers.study.spectra`). Methods without singular values (CP, TT) are not offered.
    """
    costs, out = problem.costs, {}
    for layer, methods in problem.layers.items():
        module = problem.model.get_submodule(layer)
        out[layer] = [Option(None, costs.dense(layer), 0.0, 0.0)]
        for name in methods:
            method = get_method(name)
            found = spectra(method, module)
            for rank in rank_grid(method, module, SPECTRUM_POINTS, problem.multiple) if found else []:
                lost = sum(1.0 - s.energy_kept(r) for s, r in zip(found, rank_values(rank)))
                cost = costs.of(layer, (name, rank))
                if cost < costs.dense(layer):
                    out[layer].append(Option((name, rank), cost, lost, -lost))
    return out


def spectrum(problem: Problem) -> Allocation:
    """Least summed lost weight energy within the target (:func:`spectrum_options`), solved as the rankscope
    allocator's steps 1-3: data-free, no sweep table, and under a latency target every option is timed."""
    options, budget = _scaled(problem, spectrum_options(problem))
    chosen = solve(options, budget)
    if chosen is None:
        return _cheapest(problem, options, "spectrum")
    return finish(problem, {layer: o.choice for layer, o in chosen.items()}, "spectrum",
                  "knapsack on lost weight energy: Lagrangian relaxation, greedy fill, pair exchange")

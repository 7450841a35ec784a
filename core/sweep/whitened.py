"""The ``whitened`` allocator: per-matrix ``aa_svd`` ranks within a budget, each rank's loss the closed-form
whitened truncation loss (SVD-LLM V2's allocation), solved by the knapsack of :mod:`core.sweep.knapsack`.

It runs the rankscope allocator's steps 1-3 on per-matrix ``aa_svd`` ranks with the closed-form truncation loss of
the whitened spectrum as each rank's loss (SVD-LLM V2's allocation): the ``whitened`` proxy's
``sum_{i>r} sigma_i(W S)^2 / ||W X||^2`` (:func:`core.sweep.proxies.layer_scores`), the layer's relative output
error on the calibration inputs (``problem.data``) at ``aa_svd``'s own damping, from one forward pass and one
whitened SVD per layer (:func:`whitened_losses`). No table; no whole-model evaluation. It is called as
:func:`whitened`, not yet registered in :data:`core.sweep.allocate.ALLOCATORS`: the CLI and the dashboard give
allocators no calibration data.

References
----------
Wang, Alam, Wan, Zhang, Zheng, Chen, Zhang. "SVD-LLM V2: Optimizing Singular Value Truncation for Large Language
Model Compression." NAACL 2025.
"""
from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from core.decompose.rank import rank_grid, rank_values
from core.decompose.registry import get_method
from core.errors import RankscopeError
from core.profile.quality import batch_limit
from core.sweep import proxies
from core.sweep.budget import Allocation, Option, Problem, finish
from core.sweep.knapsack import _cheapest, _scaled, solve

WHITENED_POINTS = 16  # aa_svd ranks per layer the whitened allocator chooses among (its losses are free at any rank)
AWARE = "aa_svd"


def calibration_batches(data: Any, batch_size: int = 64) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``data`` (``(input, target)`` items, or a batch of model inputs as one tensor) as a list of ``(inputs, targets)``
    batches (targets ``-1`` for a bare tensor)."""
    if isinstance(data, torch.Tensor):
        return [(x, torch.full((len(x),), -1)) for x in data.split(batch_size)]
    return [(x, y) for x, y in DataLoader(data, batch_size=batch_limit(data, batch_size), shuffle=False, num_workers=0)]


def whitened_losses(model: torch.nn.Module, layers: list[str], data: Any, damping: float | None = None) -> dict[str, list[float]]:
    """Per layer of ``layers`` (each one ``aa_svd`` applies to): the whitened proxy's loss of ``aa_svd`` at every rank,
    ``out[layer][r]`` for ``r`` in ``0 .. full rank`` (0 at full rank), from one forward pass over ``data``
    (see :func:`calibration_batches`) and one whitened SVD per layer, at ``damping`` (default ``aa_svd``'s)."""
    grams, inputs = proxies.layer_inputs(model, calibration_batches(data), layers, layers)
    stats = proxies.Statistics(grams, inputs, {}, {})
    method, out = get_method(AWARE), {}
    for layer in layers:
        module = model.get_submodule(layer)
        ranks = list(range(method.max_rank(module) + 1))
        out[layer] = proxies.layer_scores("whitened", module, AWARE, ranks, stats, layer, damping)
        del inputs[layer]  # each layer's inputs are needed once: free them as we go
    return out


def whitened_options(problem: Problem, losses: dict[str, list[float]] | None = None,
                     points: int = WHITENED_POINTS) -> dict[str, list[Option]]:
    """Per layer of the problem that takes ``aa_svd``: keep dense, then ``points`` ``aa_svd`` ranks from 1 to full
    (:func:`core.decompose.rank.rank_grid`, rounded to ``problem.multiple``) cheaper than dense, each with its whitened truncation loss (:func:`whitened_losses` of
    ``problem.data`` unless ``losses`` are given)."""
    layers = [layer for layer, methods in problem.layers.items() if AWARE in methods]
    if not layers:
        raise RankscopeError("the whitened allocator allocates aa_svd ranks: name aa_svd among the layers' methods")
    if losses is None:
        if problem.data is None:
            raise RankscopeError("the whitened allocator needs calibration data (the problem's data): the layers' "
                                 "inputs whiten their spectra")
        losses = whitened_losses(problem.model, layers, problem.data)
    costs, method, out = problem.costs, get_method(AWARE), {}
    for layer in layers:
        module = problem.model.get_submodule(layer)
        out[layer] = [Option(None, costs.dense(layer), 0.0, 0.0)]
        for rank in rank_grid(method, module, points, problem.multiple):
            cost = costs.of(layer, (AWARE, rank))
            if cost < costs.dense(layer):
                lost = float(losses[layer][rank_values(rank)[0]])
                out[layer].append(Option((AWARE, rank), cost, lost, -lost))
    return out


def whitened(problem: Problem, losses: dict[str, list[float]] | None = None, points: int = WHITENED_POINTS) -> Allocation:
    """Least summed whitened truncation loss of per-matrix ``aa_svd`` ranks within the target (:func:`whitened_options`
    with ``points`` ranks per layer: the pair exchange's time grows with their square), solved as the rankscope
    allocator's steps 1-3."""
    options, budget = _scaled(problem, whitened_options(problem, losses, points))
    chosen = solve(options, budget)
    if chosen is None:
        return _cheapest(problem, options, "whitened")
    return finish(problem, {layer: o.choice for layer, o in chosen.items()}, "whitened",
                  "knapsack on the whitened truncation loss of aa_svd: Lagrangian relaxation, greedy fill, pair exchange")

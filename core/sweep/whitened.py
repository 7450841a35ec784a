"""The ``whitened`` allocator: per-matrix ``aa_svd`` ranks within a budget, each rank's loss the closed-form
whitened truncation loss (SVD-LLM V2's allocation), solved by the knapsack of :mod:`core.sweep.knapsack`.

It runs the rankscope allocator's steps 1-3 on per-matrix ``aa_svd`` ranks with a closed-form loss of each rank
read off the whitened spectrum ``W S = U diag(sigma) V^T`` (``S S^T = X^T X + lam I``, ``aa_svd``'s own damping):
truncating at rank ``r`` drops ``sum_{i>r} sigma_i^2``, the (damped) output error ``||W X - W_r X||^2`` on the
calibration inputs ``X`` (``problem.data``). How the matrices' losses are put on one scale is the *weighting*
(:data:`WEIGHTINGS`):

``relative``
    ``sum_{i>r} sigma_i^2 / ||W X||^2``, the ``whitened`` proxy's score (:func:`core.sweep.proxies.layer_scores`):
    every matrix's output error as a share of its own output energy, all matrices weighed alike.
``absolute``
    ``sum_{i>r} sigma_i^2 / N`` (``N`` the calibration rows): the output error energy per token itself, which
    SVD-LLM V2 compares across the matrices of one type.
``fisher``
    ``1/2 sum_{i>r} sigma_i^2 sum_o F_o U_oi^2 / N``: each output channel's error weighted by the mean squared
    gradient of the model's summed loss with respect to that output (:func:`output_fisher`, one backward pass
    over the data), a diagonal Gauss-Newton estimate of the increase of the mean per-token loss, in its units.
    The default (:data:`WEIGHTING`): on smollm2-135m at 80 % of its linears' parameters it gave perplexity 33.33
    against 51.61 (relative) and 1,105 (absolute), dense 27.96 (4 evaluation windows). It needs targets (the data's
    task's loss); ``relative`` and ``absolute`` take bare input tensors.

One forward pass (and for ``fisher`` one backward pass) and one whitened SVD per layer (:func:`whitened_losses`;
:func:`truncation_losses` from inputs already captured). No table; no whole-model evaluation. It is registered as
``whitened`` in :data:`core.sweep.allocate.ALLOCATORS`; :func:`core.budget.compress_to_budget` calls it with the
calibration data and the post-training steps, for the CLI, the Plan page and the benches alike.

References
----------
Wang, Alam, Wan, Zhang, Zheng, Chen, Zhang. "SVD-LLM V2: Optimizing Singular Value Truncation for Large Language
Model Compression." NAACL 2025.
"""
from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from core.decompose.activation_aware import input_gram
from core.decompose.rank import rank_grid, rank_values
from core.decompose.registry import get_method
from core.errors import RankscopeError
from core.profile.quality import batch_limit, task_for
from core.sweep import proxies
from core.sweep.budget import Allocation, Option, Problem, finish
from core.sweep.knapsack import _cheapest, _scaled, solve

WHITENED_POINTS = 16  # aa_svd ranks per layer the whitened allocator chooses among (its losses are free at any rank)
AWARE = "aa_svd"
WEIGHTINGS = ("relative", "absolute", "fisher")  # how each matrix's truncation loss is scaled (module docstring)
WEIGHTING = "fisher"  # smollm2-135m at 80 % of its linears' parameters, 4 evaluation windows (dense 27.96), aa_svd
# on 8 calibration windows: perplexity 33.33 (fisher, gradients of 4 of them), 51.61 (relative), 1,105 (absolute)


def calibration_batches(data: Any, batch_size: int = 64) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``data`` (``(input, target)`` items, or a batch of model inputs as one tensor) as a list of ``(inputs, targets)``
    batches (targets ``-1`` for a bare tensor)."""
    if isinstance(data, torch.Tensor):
        return [(x, torch.full((len(x),), -1)) for x in data.split(batch_size)]
    return [(x, y) for x, y in DataLoader(data, batch_size=batch_limit(data, batch_size), shuffle=False, num_workers=0)]


def _first_output(name: str, outputs: dict[str, torch.Tensor]):
    """A forward hook keeping the output of a module's first call in ``outputs[name]``."""
    def hook(_module: nn.Module, _args: tuple, out: torch.Tensor) -> None:
        outputs.setdefault(name, out)
    return hook


def output_fisher(model: nn.Module, layers: list[str], data: Any) -> dict[str, torch.Tensor]:
    """Per layer of ``layers``: ``F_o``, the mean over the output rows (tokens, samples) of the squared gradient of the
    model's summed loss under ``data``'s task (:func:`core.profile.task_for`; next-token cross-entropy for text) with
    respect to each output channel ``o`` of the layer, float64 ``(O,)``, from one backward pass per batch of
    :func:`calibration_batches`. No weight gradient is kept; the model's ``requires_grad`` flags are restored.

    Raises
    ------
    RankscopeError
        ``data`` has no targets (a bare tensor): the loss needs them.
    """
    if isinstance(data, torch.Tensor):
        raise RankscopeError("the fisher weighting needs targets for the loss (a data set of (input, target) items), "
                             "not a bare tensor of inputs")
    task = task_for(data)
    modules = {layer: model.get_submodule(layer) for layer in layers}
    sums = {layer: torch.zeros(m.weight.shape[0], dtype=torch.float64) for layer, m in modules.items()}
    rows = dict.fromkeys(layers, 0)
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(True)  # the graph must reach every layer's output
        for x, y in calibration_batches(data):
            outputs: dict[str, torch.Tensor] = {}
            with ExitStack() as hooks, torch.enable_grad():
                for name, module in modules.items():
                    hooks.enter_context(module.register_forward_hook(_first_output(name, outputs)))
                loss = task.loss(model(x), y) * y.numel()  # the summed per-token (per-sample) loss
            found = [name for name in layers if name in outputs]
            grads = torch.autograd.grad(loss, [outputs[name] for name in found], allow_unused=True)
            for name, g in zip(found, grads):
                if g is not None:
                    if isinstance(modules[name], nn.Conv2d):
                        g = g.movedim(1, -1)  # a conv's channels are dim 1: (N, H, W, O)
                    flat = g.detach().reshape(-1, g.shape[-1]).to(torch.float64)  # (rows, O)
                    sums[name] += (flat ** 2).sum(0)
                    rows[name] += len(flat)
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
    return {name: sums[name] / max(rows[name], 1) for name in layers}


def input_rows(module: nn.Module, x: torch.Tensor) -> int:
    """How many vectors ``module``'s weight multiplies on inputs ``x``: a Linear's input rows, a conv's output
    positions times the batch."""
    if isinstance(module, nn.Conv2d):
        with torch.no_grad():
            return len(x) * module(x[:1]).shape[-2:].numel()
    return x.reshape(-1, x.shape[-1]).shape[0]


def truncation_losses(model: nn.Module, inputs: dict[str, torch.Tensor], *, weighting: str = "relative",
                      fisher: dict[str, torch.Tensor] | None = None, damping: float | None = None) -> dict[str, list[float]]:
    """Per layer of ``inputs`` (each one ``aa_svd`` applies to, with the inputs it receives on calibration data): the
    ``weighting``'s loss of ``aa_svd`` at every rank, ``out[layer][r]`` for ``r`` in ``0 .. full rank`` (0 at full
    rank), read off one whitened SVD per layer (``aa_svd``'s cached factorization of those inputs at ``damping``,
    default its own, so building the plan afterwards from the same input tensors factors nothing again).

    Parameters
    ----------
    model : the dense model.
    inputs : layer -> its calibration inputs (a Linear's rows of ``D`` features, a conv's input maps), e.g.
        :func:`core.layers.layer_inputs`.
    weighting : one of :data:`WEIGHTINGS` (see the module docstring).
    fisher : layer -> ``F_o`` (:func:`output_fisher`); required by the ``fisher`` weighting.
    damping : ``aa_svd``'s damping (default its own).
    """
    if weighting not in WEIGHTINGS:
        raise RankscopeError(f"unknown weighting {weighting!r}: use one of {', '.join(WEIGHTINGS)}")
    if weighting == "fisher" and (fisher is None or set(inputs) - set(fisher)):
        raise RankscopeError("the fisher weighting needs the output Fisher of every layer (output_fisher)")
    method = get_method(AWARE)
    damping = float(method.options["damping"]) if damping is None else damping
    out = {}
    for layer, x in inputs.items():
        module = model.get_submodule(layer)
        factors = method.factorization(module, x, damping=damping)  # W S = U diag(S) V^T; U (1, O, k), S (1, k)
        power = factors.S[0].to(torch.float64) ** 2  # (k,)
        rows = input_rows(module, x)
        if weighting == "relative":
            W = module.weight.detach().to(torch.float64)
            mean_diag = float(input_gram(module, x).diagonal().mean())
            lam = damping * mean_diag  # aa_svd's lam: damping x mean diag(X^T X), X the vectors W multiplies
            dense = float(power.sum()) - (lam if lam > 0 else 1.0) * float((W ** 2).sum())  # ||W X||^2
            power = power / dense if dense > 0 else power
        elif weighting == "absolute":
            power = power / rows
        else:
            channel = fisher[layer].to(torch.float64)  # (O,)
            power = 0.5 * power * (factors.U[0].to(torch.float64) ** 2 * channel.unsqueeze(1)).sum(0) / rows
        tails = power.flip(0).cumsum(0).flip(0)  # tails[r] = sum_{i >= r}
        out[layer] = [float(v) for v in torch.cat([tails, tails.new_zeros(1)])]
    return out


def whitened_losses(model: torch.nn.Module, layers: list[str], data: Any, damping: float | None = None,
                    weighting: str = WEIGHTING) -> dict[str, list[float]]:
    """Per layer of ``layers`` (each one ``aa_svd`` applies to): the ``weighting``'s loss of ``aa_svd`` at every rank,
    ``out[layer][r]`` for ``r`` in ``0 .. full rank`` (0 at full rank), from one forward pass over ``data`` (see
    :func:`calibration_batches`; the ``fisher`` weighting: one backward pass too, :func:`output_fisher`) and one
    whitened SVD per layer (:func:`truncation_losses`), at ``damping`` (default ``aa_svd``'s)."""
    _, inputs = proxies.layer_inputs(model, calibration_batches(data), [], layers)
    fisher = output_fisher(model, layers, data) if weighting == "fisher" else None
    return truncation_losses(model, inputs, weighting=weighting, fisher=fisher, damping=damping)


def whitened_options(problem: Problem, losses: dict[str, list[float]] | None = None,
                     points: int = WHITENED_POINTS, weighting: str = WEIGHTING) -> dict[str, list[Option]]:
    """Per layer of the problem that takes ``aa_svd``: keep dense, then ``points`` ``aa_svd`` ranks from 1 to full
    (:func:`core.decompose.rank.rank_grid`, rounded to ``problem.multiple``) cheaper than dense, each with its whitened truncation loss (:func:`whitened_losses` of
    ``problem.data`` under ``weighting`` unless ``losses`` are given)."""
    layers = [layer for layer, methods in problem.layers.items() if AWARE in methods]
    if not layers:
        raise RankscopeError("the whitened allocator allocates aa_svd ranks: name aa_svd among the layers' methods")
    if losses is None:
        if problem.data is None:
            raise RankscopeError("the whitened allocator needs calibration data (the problem's data): the layers' "
                                 "inputs whiten their spectra")
        losses = whitened_losses(problem.model, layers, problem.data, weighting=weighting)
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


def whitened(problem: Problem, losses: dict[str, list[float]] | None = None, points: int = WHITENED_POINTS,
             weighting: str = WEIGHTING) -> Allocation:
    """Least summed whitened truncation loss of per-matrix ``aa_svd`` ranks within the target (:func:`whitened_options`
    with ``points`` ranks per layer: the pair exchange's time grows with their square; the losses ``losses``, or
    ``weighting``'s of ``problem.data``), solved as the rankscope allocator's steps 1-3."""
    options, budget = _scaled(problem, whitened_options(problem, losses, points, weighting))
    chosen = solve(options, budget)
    if chosen is None:
        return _cheapest(problem, options, "whitened")
    return finish(problem, {layer: o.choice for layer, o in chosen.items()}, "whitened",
                  "knapsack on the whitened truncation loss of aa_svd: Lagrangian relaxation, greedy fill, pair exchange")

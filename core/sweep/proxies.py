"""Proxies of the sensitivity sweep: every rank of every layer scored from one pass over calibration data.

The exact sweep (:func:`core.sweep.sweep`) evaluates the network once per (layer, method, rank) point. A proxy
predicts each point's cost to the model from statistics gathered in one pass and returns a table of the same
shape (columns of :mod:`core.sweep.table`; the model row, one dense row per layer, then the points in grid
order), so the ``rankscope`` and ``greedy`` allocators and the dashboard take either.

What a proxy table holds
------------------------
- ``layer, method, rank, fraction, params, flops``: exactly as the exact sweep has them (costs from
  ``method.cost`` at the layer's :class:`~core.plan.cost.Site`); no latency (NaN, batch and threads 0).
- The model row and the dense rows: the unmodified model's scores on the calibration data, evaluated exactly
  (:class:`core.evaluate.cached.LayerEvaluator`, as the exact sweep scores its model row).
- A point's ``loss``: the dense model's loss plus the proxy's *score* of the point (what the knapsack reads as
  the loss increase). For ``taylor`` and ``fisher`` the score is a predicted loss change in the task's loss
  units; for ``whitened`` the layer's relative calibration output error, for ``energy`` the share of weight
  energy dropped (dimensionless, comparable between layers as the ``spectrum`` allocator compares them).
- A point's headline metric (``top1`` for classification; what greedy reads): the dense model's value minus the
  score (plus it, for a metric where lower is better). Only its order means anything: greedy compares its levels
  across layers, and this order is the score's. The task's other metrics are NaN.
- ``samples``: the calibration examples behind the statistics.
- ``table.attrs["proxy"]``: the proxy's name (a CSV cannot hold it: read it from the file's cache name, which
  carries :func:`proxy_key`).

The proxies (``W`` a layer's weight, ``W_r`` its truncation at rank ``r`` by the point's method,
``dW = W_r - W``, ``X`` the vectors ``W`` multiplies over the calibration set: a Linear's input rows, a conv's
input patches)
------------------------------------------------------------------------------------------------------------
``whitened``
    ``||dW X||^2 / ||W X||^2``, the relative calibration output error of the layer, exact for every covered
    method (``tr(dW G dW^T)`` with ``G = X^T X`` from :func:`core.decompose.activation_aware.input_gram`). For
    ``aa_svd`` it is the SVD-LLM tail ``sum_{i>r} sigma_i(W S)^2`` with ``S S^T = G + lam I``
    (:func:`core.decompose.activation_aware.whitened_svd`): the output error itself without damping, the
    damped objective ``||dW X||^2 + lam ||dW||^2`` with it (default: ``aa_svd``'s own damping, so the rows
    describe the layer a plan would build). One no-grad forward pass. Covers Linear and ungrouped Conv2d
    (the patches :func:`~core.decompose.activation_aware.input_gram` reads) with ``svd``, ``spatial_svd``,
    ``tucker2`` and, when named, ``aa_svd``.
``taylor``
    The first-order change of the mean loss, ``<G_W, dW>`` with ``G_W`` its gradient with respect to ``W``
    from one backward pass over the calibration batches. For the SVD family (``svd``, ``spatial_svd``,
    ``aa_svd``) ``dW = -sum_{i>r} sigma_i u_i v_i^T`` (per group), so the change is ``-sum_{i>r} s_i`` with
    ``s_i = sigma_i u_i^T G v_i`` (:func:`component_scores`): a cumulative sum gives every rank. ``tucker2``:
    ``<G_W, dW>`` of the HOSVD truncation. Signed: at a trained minimum it can predict a loss decrease.
    Covers every layer the method applies to (grouped and transposed convs included; ``aa_svd`` when named).
``fisher``
    ``1/2 mean_n <g_n, dW>^2``, ``g_n = d l_n / dW`` the per-sample gradient: the second-order term with the full
    empirical Fisher ``F = mean_n g_n g_n^T`` as the Hessian, in the direction of the point's weight change. Only
    those directions are needed, so no diagonal or Kronecker-factored approximation of ``F`` is made: every
    point's ``dW`` is formed before the pass and each per-sample gradient projected on them
    (:func:`fisher_forms`; ``fisher_batch`` samples per gradient, 1 by default, the exact empirical Fisher). A
    non-negative predicted loss increase. One more backward pass per micro-batch, for the layers whose
    directions fit :data:`FISHER_MB` at a time (more passes when they do not). On fmnist-resnet its pooled
    Kendall τ against the exact sweep is 0.823, where the diagonal ``1/2 sum F_ii dW_i^2`` gave 0.789. Covers
    what ``taylor`` covers.
``energy``
    The baseline: the share of squared singular values a rank drops, summed over the rank's modes, from
    :func:`core.layers.study.spectra` exactly as :func:`core.sweep.knapsack.spectrum_options` computes it
    (exact relative weight error of SVD and spatial SVD, the HOSVD bound for Tucker-2). Data-free (the data
    only score the model row). Covers ``svd``, ``spatial_svd`` and ``tucker2`` wherever they apply.

``taylor`` and ``fisher`` need targets (labels): a fidelity loss and its gradient are zero at the unmodified
model, so they refuse a task that ``needs_reference``. Methods a proxy does not cover (``tt``, ``cp``, the
nonlinear ones) are left out of a default (mixed) grid, and refused when named.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
import torch
from torch import nn

from core.decompose.activation_aware import input_gram, whitened_svd
from core.decompose.rank import Rank, rank_fraction, rank_grid, rank_values
from core.decompose.registry import get_method
from core.decompose.svd import MatrixSVD
from core.decompose.tucker2 import HOSVD, mode_product
from core.errors import RankscopeError, close_matches_hint
from core.evaluate.cached import LayerEvaluator, Progress
from core.hooks import first_calls
from core.layers.study import spectra
from core.plan import LayerEntry, weights_hash
from core.plan.cost import entry_cost, layer_sites
from core.profile import count_flops, count_params, task_for
from core.sweep.cache import SweepCache
from core.sweep.engine import layer_methods
from core.sweep.table import DENSE, MODEL, Point, PointKey, columns, empty_table, key_of, score_columns
from core.task import Task

Row = dict[str, Any]
PROXIES = ("whitened", "taylor", "fisher", "energy")
DATA_FREE = ("svd", "spatial_svd", "tucker2")  # the sweep's methods a proxy can score
COVERED = {"whitened": DATA_FREE + ("aa_svd",), "taylor": DATA_FREE + ("aa_svd",), "fisher": DATA_FREE + ("aa_svd",),
           "energy": DATA_FREE}
DATA_AWARE = "aa_svd"  # scored only when named: the exact sweep cannot build it, so no agreement can be measured


def aa_damping() -> float:
    """``aa_svd``'s default damping, the whitened proxy's default (its ``aa_svd`` rows describe the layer a plan builds)."""
    return float(get_method(DATA_AWARE).options["damping"])


def proxy_key(proxy: str, damping: float | None = None, fisher_batch: int = 1) -> str:
    """What identifies a proxy's numbers beyond the data: ``"whitened-d0.01"``, ``"taylor"``, ``"fisher-ef-b1"``, ``"energy"``."""
    check_proxy(proxy)
    if proxy == "whitened":
        return f"whitened-d{aa_damping() if damping is None else damping:g}"
    return f"fisher-ef-b{fisher_batch}" if proxy == "fisher" else proxy


def check_proxy(proxy: str) -> None:
    """A :class:`RankscopeError` naming the known proxies unless ``proxy`` is one."""
    if proxy not in PROXIES:
        raise RankscopeError(f"unknown proxy {proxy!r}{close_matches_hint(proxy, list(PROXIES))}; known: {', '.join(PROXIES)}")


def covers(proxy: str, method: str, module: nn.Module) -> bool:
    """Whether ``proxy`` scores ``method`` on ``module`` (see the module docstring)."""
    if method not in COVERED[proxy] or get_method(method).check(module) is not None:
        return False
    if proxy == "whitened":  # input_gram reads a Linear's rows or an ungrouped conv's patches
        return isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and module.groups == 1)
    return True


def proxy_methods(model: nn.Module, proxy: str, layers: Sequence[str] | None = None,
                  methods: Sequence[str] | None = None, *, mix: bool = False) -> dict[str, list[str]]:
    """Each layer a proxy scores, in forward order, with its methods: :func:`core.sweep.layer_methods`'s choice less
    the methods the proxy does not cover, or the named ``methods`` (``aa_svd`` among them where the proxy covers it).

    Raises
    ------
    RankscopeError
        An unknown proxy, layer or method; a named method the proxy does not cover; nothing left to score.
    """
    check_proxy(proxy)
    for name in methods or []:
        get_method(name)  # an unknown name fails here, with its close matches
        if name not in COVERED[proxy]:
            raise RankscopeError(f"the {proxy} proxy does not score {name}; it scores {', '.join(COVERED[proxy])}")
    free = [m for m in methods or [] if m != DATA_AWARE]
    chosen = layer_methods(model, layers, free or None, mix=mix) if free or not methods else {}
    if methods and DATA_AWARE in methods:
        modules = dict(model.named_modules())
        for path in layers or [p for p in modules if p]:
            if path not in modules or not path:
                raise RankscopeError(f"no layer named {path!r} in the model{close_matches_hint(path, list(modules))}")
            if get_method(DATA_AWARE).check(modules[path]) is None:
                chosen.setdefault(path, []).append(DATA_AWARE)
        order = list(modules)
        chosen = dict(sorted(chosen.items(), key=lambda item: order.index(item[0])))
    scored = {path: [m for m in names if covers(proxy, m, model.get_submodule(path))] for path, names in chosen.items()}
    scored = {path: names for path, names in scored.items() if names}
    if not scored:
        raise RankscopeError(f"nothing for the {proxy} proxy to score: no layer takes a method it covers "
                             f"({', '.join(COVERED[proxy])})")
    return scored


def proxy_grid(model: nn.Module, proxy: str, layers: Sequence[str] | None = None, methods: Sequence[str] | None = None,
               points: int = 10, *, mix: bool = False, multiple: int = 1) -> list[Point]:
    """The points a proxy table holds: :func:`core.decompose.rank.rank_grid` of ``points`` ranks per layer and method of
    :func:`proxy_methods` (the exact sweep's grid, :func:`core.sweep.sweep_grid`, where both score a method)."""
    if points < 1:
        raise RankscopeError(f"points must be at least 1, got {points}")
    return [Point(path, name, rank)
            for path, names in proxy_methods(model, proxy, layers, methods, mix=mix).items()
            for name in names
            for rank in rank_grid(get_method(name), model.get_submodule(path), points, multiple)]


# --- truncations: the weight change of a method at a rank --------------------------------------------------------


def component_scores(svd: MatrixSVD, gradient: torch.Tensor) -> torch.Tensor:
    """``s_i = sigma_i u_i^T G v_i`` (g, k) of every component of ``svd`` against ``gradient`` (g, m, n) in its layout.

    For a :class:`~core.decompose.activation_aware.WhitenedSVD` the components are the un-whitened ones (``v_i^T``
    replaced by ``v_i^T S^{-1}``), so in every case ``<G, M_r - M> = -s[:, r:].sum()``.
    """
    first, second = svd.factors(svd.S.shape[1])  # (g, k, n), (g, m, k); second @ first == the matrix
    return torch.einsum("gmk,gmn,gkn->gk", second, gradient.to(first.dtype), first)


@dataclass
class Truncation:
    """A layer's factorization by one method: the weight change ``dW = W_r - W`` at any rank, in the weight's shape.

    ``svd`` holds the SVD-family factorization (``None`` for Tucker-2), ``order`` the flat weight index of each entry of
    the method's matrix layout (so a weight-shaped tensor maps to the layout and back).
    """

    module: nn.Module
    method: str
    factors: MatrixSVD | HOSVD
    order: torch.Tensor | None = None

    @classmethod
    def of(cls, module: nn.Module, method: str, calibration: torch.Tensor | None = None,
           damping: float | None = None) -> Truncation:
        """The factorization ``method`` truncates (``aa_svd``: :func:`~core.decompose.activation_aware.whitened_svd`
        of ``calibration``, the layer's inputs, at ``damping``)."""
        found = get_method(method)
        if method == DATA_AWARE:
            factors = whitened_svd(module, calibration, aa_damping() if damping is None else damping)
        else:
            factors = found.factorization(module)
        if isinstance(factors, HOSVD):
            return cls(module, method, factors)
        return cls(module, method, factors, layout_order(module, found.matrix))

    def to_layout(self, tensor: torch.Tensor) -> torch.Tensor:
        """A weight-shaped tensor in the SVD family's matrix layout (g, m, n)."""
        return tensor.reshape(-1)[self.order].reshape(self.order.shape)

    def delta(self, rank: Rank) -> torch.Tensor:
        """``W_r - W`` in float64, the weight's shape."""
        values = rank_values(rank)
        if isinstance(self.factors, HOSVD):
            core, Us = self.factors.factors(values)
            for mode, U in zip(self.factors.modes, Us):
                core = mode_product(core, U, mode)
            return core - self.factors.tensor
        first, second = self.factors.factors(self.factors.S.shape[1])
        r = values[0]
        layout = -(second[:, :, r:] @ first[:, r:, :])  # (g, m, n): minus the dropped components
        flat = torch.empty(self.order.numel(), dtype=layout.dtype, device=layout.device)
        flat[self.order.reshape(-1)] = layout.reshape(-1)
        return flat.reshape(self.module.weight.shape)


def layout_order(module: nn.Module, matrix: Callable[[nn.Module], torch.Tensor]) -> torch.Tensor:
    """The flat weight index at each entry of ``matrix(module)`` (a reshape or permutation of the weight).

    Found by handing ``matrix`` a copy of the module whose weight holds its own flat indices (float64, exact).
    """
    weight = module.weight
    index = torch.arange(weight.numel(), dtype=torch.float64, device=weight.device).reshape(weight.shape)
    probe = copy.deepcopy(module)
    probe.weight = nn.Parameter(index, requires_grad=False)
    return matrix(probe).round().long()


# --- statistics from one pass -------------------------------------------------------------------------------------


@dataclass
class Statistics:
    """What the calibration pass gathered, per layer: ``gram`` (``X^T X``), ``inputs`` (the layer's inputs, only for
    ``aa_svd``), ``gradient`` (of the mean loss); and per point, ``fisher`` (``1/2 mean_n <g_n, dW>^2``)."""

    gram: dict[str, torch.Tensor]
    inputs: dict[str, torch.Tensor]
    gradient: dict[str, torch.Tensor]
    fisher: dict[PointKey, float]


def layer_inputs(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], grams: Sequence[str],
                 keep: Sequence[str]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(grams, inputs)``: ``X^T X`` of each layer of ``grams`` summed over the batches, and the inputs of each of
    ``keep`` concatenated, from one no-grad forward pass per batch (:func:`core.hooks.first_calls`)."""
    names = list(dict.fromkeys([*grams, *keep]))
    gram: dict[str, torch.Tensor] = {}
    held: dict[str, list[torch.Tensor]] = {name: [] for name in keep}
    for x, _ in batches:
        calls = first_calls(model, x, names)
        for name in names:
            args, kwargs = calls[name]
            value = args[0] if args else kwargs["input"]
            if name in grams:
                part = input_gram(model.get_submodule(name), value)
                gram[name] = part if name not in gram else gram[name] + part
            if name in held:
                held[name].append(value)
    return gram, {name: torch.cat(values) for name, values in held.items()}


FISHER_MB = 512.0  # the fisher proxy's weight directions held at once (float64); more layers take another pass


def _weight_gradients(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], task: Task,
                      names: Sequence[str], micro: int | None,
                      accumulate: Callable[[str, torch.Tensor], None]) -> None:
    """``accumulate(name, g)`` with ``g`` (float64) the gradient of the summed loss of each micro-batch of ``micro``
    samples (``None``: each batch) with respect to the weight of each layer of ``names``. The model is left as it was
    (``requires_grad`` restored)."""
    weights = [model.get_submodule(name).weight for name in names]
    flags = [w.requires_grad for w in weights]
    try:
        for w in weights:
            w.requires_grad_(True)
        with torch.enable_grad():
            for x, y in batches:
                for xs, ys in zip(*(t.split(micro or len(x)) for t in (x, y))):
                    loss = task.loss(model(xs), ys) * len(ys)  # the summed loss of these samples
                    for name, g in zip(names, torch.autograd.grad(loss, weights)):
                        accumulate(name, g.to(torch.float64))
    finally:
        for w, flag in zip(weights, flags):
            w.requires_grad_(flag)


def gradients(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], task: Task,
              names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Per layer of ``names``: the gradient of the mean loss over ``batches`` with respect to its weight."""
    total = sum(len(y) for _, y in batches)
    sums = {name: torch.zeros_like(model.get_submodule(name).weight, dtype=torch.float64) for name in names}
    _weight_gradients(model, batches, task, names, None, lambda name, g: sums[name].add_(g))
    return {name: acc / total for name, acc in sums.items()}


def fisher_forms(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], task: Task, grid: Sequence[Point],
                 direction: Callable[[str, list[Point]], torch.Tensor], *, micro: int = 1) -> dict[PointKey, float]:
    """``1/2 sum_b <g_b, dW>^2 / N`` of every point of ``grid``: ``direction(layer, points)`` is the ``(K, weight
    numel)`` float64 stack of the weight changes ``dW`` of ``points`` (the layer's), ``g_b`` the gradient of the summed
    loss of micro-batch ``b`` of ``micro`` samples (``micro=1``: the empirical Fisher's quadratic form), ``N`` the
    samples. The layers go through the backward pass as many at a time as their directions fit :data:`FISHER_MB`."""
    total = sum(len(y) for _, y in batches)
    by_layer: dict[str, list[Point]] = {}
    for p in grid:
        by_layer.setdefault(p.layer, []).append(p)
    chunks: list[list[str]] = [[]]
    held = 0
    for layer, mine in by_layer.items():
        size = len(mine) * model.get_submodule(layer).weight.numel() * 8
        if chunks[-1] and held + size > FISHER_MB * 1e6:
            chunks.append([])
            held = 0
        chunks[-1].append(layer)
        held += size
    out: dict[PointKey, float] = {}
    for chunk in chunks:
        D = {layer: direction(layer, by_layer[layer]) for layer in chunk}
        sums = {layer: torch.zeros(len(D[layer]), dtype=torch.float64) for layer in chunk}
        _weight_gradients(model, batches, task, chunk, micro, lambda n, g: sums[n].add_((D[n] @ g.reshape(-1)) ** 2))
        out |= {p.key: 0.5 * float(v) / total for layer in chunk for p, v in zip(by_layer[layer], sums[layer])}
    return out


def gather(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], task: Task, proxy: str,
           grid: Sequence[Point], fisher_batch: int, damping: float | None) -> Statistics:
    """The statistics ``proxy`` needs for the points of ``grid``."""
    layers = list(dict.fromkeys(p.layer for p in grid))
    aware = list(dict.fromkeys(p.layer for p in grid if p.method == DATA_AWARE))
    gram, inputs = {}, {}
    if proxy == "whitened" or aware:
        gram, inputs = layer_inputs(model, batches, layers if proxy == "whitened" else [], aware)
    gradient = gradients(model, batches, task, layers) if proxy == "taylor" else {}

    def direction(layer: str, mine: list[Point]) -> torch.Tensor:
        module = model.get_submodule(layer)
        cuts = {m: Truncation.of(module, m, inputs.get(layer), damping) for m in dict.fromkeys(p.method for p in mine)}
        return torch.stack([cuts[p.method].delta(p.rank).reshape(-1) for p in mine])

    fisher = fisher_forms(model, batches, task, grid, direction, micro=fisher_batch) if proxy == "fisher" else {}
    return Statistics(gram, inputs, gradient, fisher)


# --- scores ---------------------------------------------------------------------------------------------------------


def output_error(delta: torch.Tensor, gram: torch.Tensor) -> float:
    """``||dW X||^2 = tr(dW G dW^T)`` for ``dW`` of a Linear or ungrouped Conv2d (any shape with ``O`` rows first)."""
    D = delta.reshape(len(delta), -1)  # (O, D), the row order of input_gram
    return float(((D @ gram) * D).sum())


def layer_scores(proxy: str, module: nn.Module, method: str, ranks: Sequence[Rank], stats: Statistics, layer: str,
                 damping: float | None) -> list[float]:
    """The proxy's score of ``module`` built by ``method`` at each of ``ranks`` (see the module docstring)."""
    if proxy == "energy":
        found = spectra(get_method(method), module)
        return [sum(1.0 - s.energy_kept(r) for s, r in zip(found, rank_values(rank))) for rank in ranks]
    if proxy == "fisher":
        return [stats.fisher[Point(layer, method, rank).key] for rank in ranks]
    cut = Truncation.of(module, method, stats.inputs.get(layer), damping)
    if proxy == "whitened":
        gram = stats.gram[layer]
        W = module.weight.detach().to(torch.float64)
        dense = output_error(W, gram)
        scale = 1.0 / dense if dense > 0 else 1.0
        if method == DATA_AWARE:  # the SVD-LLM identity: the tail of the whitened spectrum
            power = (cut.factors.S ** 2).sum(0)  # (k,)
            return [float(power[rank_values(rank)[0]:].sum()) * scale for rank in ranks]
        return [output_error(cut.delta(rank), gram) * scale for rank in ranks]
    gradient = stats.gradient[layer]  # taylor
    if isinstance(cut.factors, MatrixSVD):
        s = component_scores(cut.factors, cut.to_layout(gradient))  # (g, k)
        tails = s.flip(-1).cumsum(-1).flip(-1)  # tails[:, r] = sum_{i >= r} s_i
        tails = torch.cat([tails, torch.zeros_like(tails[:, :1])], dim=1)  # full rank drops nothing
        return [-float(tails[:, rank_values(rank)[0]].sum()) for rank in ranks]
    return [float((gradient * cut.delta(rank)).sum()) for rank in ranks]


# --- the table ------------------------------------------------------------------------------------------------------


def proxy_table(
    model: nn.Module,
    dataset: Any,
    proxy: str,
    *,
    layers: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    points: int = 10,
    mix: bool = False,
    multiple: int = 1,
    task: str | Task | None = None,
    batch_size: int = 256,
    damping: float | None = None,
    fisher_batch: int = 1,
    cache: SweepCache | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """A sensitivity table of ``model`` predicted by ``proxy`` from one pass over ``dataset`` (the calibration data).

    Parameters
    ----------
    model : the model (only read; ``requires_grad`` of the scored weights is restored after a backward pass).
    dataset : ``(input, target)`` items, as for :func:`core.sweep.sweep`.
    proxy : ``"whitened"``, ``"taylor"``, ``"fisher"`` or ``"energy"`` (see the module docstring).
    layers, methods, points, mix, multiple : the grid, see :func:`proxy_grid`.
    task : how the model row is scored and, for taylor and fisher, the loss differentiated (default
        :func:`core.profile.task_for` the data).
    batch_size : calibration batch size.
    damping : the whitened proxy's ``aa_svd`` damping (default ``aa_svd``'s own).
    fisher_batch : samples per gradient of the fisher proxy (1: the exact empirical Fisher).
    cache : rows are read from and written to this cache under the data key extended by :func:`proxy_key`
        (so they never mix with exact rows or another proxy's); a layer with every row cached is not recomputed.
    progress : called with ``(layers done, layers to compute)``.

    Returns
    -------
    pandas.DataFrame
        The exact sweep's columns and row order; ``attrs["proxy"]`` names the proxy.

    Raises
    ------
    RankscopeError
        An unknown proxy, a bad grid (:func:`proxy_methods`), taylor or fisher on a task without targets, a bad
        ``fisher_batch``.
    """
    grid = proxy_grid(model, proxy, layers, methods, points, mix=mix, multiple=multiple)
    if fisher_batch < 1:
        raise RankscopeError(f"fisher_batch must be at least 1, got {fisher_batch}")
    task = task_for(dataset, task)
    if proxy in ("taylor", "fisher") and task.needs_reference:
        raise RankscopeError(f"the {proxy} proxy differentiates the task's loss, and {task.name}'s is zero, with a zero "
                             "gradient, at the unmodified model: give labelled data")
    model.eval()
    chosen = list(dict.fromkeys(p.layer for p in grid))
    keys = [PointKey(MODEL, DENSE, "")] + [PointKey(path, DENSE, "") for path in chosen] + [p.key for p in grid]
    table_columns = columns(task)
    if cache is not None:
        cache = replace(cache, data=f"{cache.data}:{proxy_key(proxy, damping, fisher_batch)}")
        weights = weights_hash(model)
        cached = cache.load(weights, task, sorted({p.method for p in grid}) + [DENSE])
    else:
        cached = empty_table(task)
    rows: dict[PointKey, Row] = {key_of(r): r for r in cached.to_dict("records")}
    todo = [path for path in chosen if any(p.key not in rows for p in grid if p.layer == path)]
    if todo or any(key not in rows for key in keys[: len(chosen) + 1]):
        evaluator = LayerEvaluator(model, dataset, task=task, batch_size=batch_size)
        try:
            rows.update(_compute(model, evaluator, proxy, grid, todo, rows, damping, fisher_batch, progress))
        finally:
            if cache is not None:
                cache.save(weights, pd.DataFrame(rows.values(), columns=table_columns))
    table = pd.DataFrame([rows[key] for key in keys], columns=table_columns)
    table.attrs["proxy"] = proxy
    return table


def _compute(model: nn.Module, evaluator: LayerEvaluator, proxy: str, grid: list[Point], todo: list[str],
             rows: dict[PointKey, Row], damping: float | None, fisher_batch: int, progress: Progress | None) -> dict[PointKey, Row]:
    """The model and dense rows (when missing) and every row of the layers ``todo``."""
    task, out = evaluator.task, {}
    chosen = list(dict.fromkeys(p.layer for p in grid))
    example = evaluator.batches[0][0][:1]
    sites = layer_sites(model, example, chosen)
    base = rows.get(PointKey(MODEL, DENSE, ""))
    if base is None:
        base = {"layer": MODEL, "method": DENSE, "rank": "", "fraction": 1.0, "latency_ms": float("nan"),
                "latency_batch": 0, "latency_threads": 0, "params": count_params(model),
                "flops": int(count_flops(model, example).per_sample)} | score_columns(evaluator.evaluate())
        out[PointKey(MODEL, DENSE, "")] = base
    for path in chosen:
        if PointKey(path, DENSE, "") not in rows:
            cost = entry_cost(model.get_submodule(path), None, sites[path])
            out[PointKey(path, DENSE, "")] = base | {"layer": path, "params": cost.params, "flops": cost.flops}
    if not todo:
        return out
    stats = gather(model, evaluator.batches, task, proxy, [p for p in grid if p.layer in todo], fisher_batch, damping)
    higher = next(m.higher_is_better for m in task.metrics if m.name == task.headline)
    blank = {m.name: float("nan") for m in task.metrics}
    for done, path in enumerate(todo):
        module = model.get_submodule(path)
        for method in dict.fromkeys(p.method for p in grid if p.layer == path):
            ranks = [p.rank for p in grid if p.layer == path and p.method == method]
            for rank, score in zip(ranks, layer_scores(proxy, module, method, ranks, stats, path, damping)):
                key = Point(path, method, rank).key
                cost = entry_cost(module, LayerEntry(method, rank), sites[path])
                out[key] = base | blank | {
                    "layer": path, "method": method, "rank": key.rank, "fraction": rank_fraction(get_method(method), module, rank),
                    "params": cost.params, "flops": cost.flops, "loss": base["loss"] + score,
                    task.headline: base[task.headline] + (-score if higher else score)}
        if progress is not None:
            progress(done + 1, len(todo))
    return out

"""Choosing ranks: by energy kept, by a parameter or FLOP budget, or by VBMF.

Every function takes one layer and a method (name or object) and returns a :data:`core.decompose.rank.Rank`
(an int, or a tuple for ``tucker2``/``tucker2_nl``/``capsule_tucker``);
:func:`select_ranks` maps one rule over named layers.

- :func:`energy_rank`: the smallest rank keeping a fraction of the squared singular values of the
  matrix the method truncates (per mode for Tucker; summed over groups for grouped convs; for
  ``aa_svd`` the whitened weight, so the fraction is of the output energy on the calibration data).
- :func:`ratio_rank`: the largest rank whose predicted cost (``method.cost``) is within ``ratio`` of the
  dense layer's; multi-rank methods scale every mode's rank by the same fraction of its maximum.
- :func:`vbmf_rank`: empirical variational Bayesian matrix factorization (Nakajima et al., 2013), the
  analytic solution with the noise variance estimated; for Tucker applied to each mode's unfolding
  (as in Kim et al., 2016 and MUSCO).

``energy_rank`` and ``vbmf_rank`` need singular values: they work for svd, spatial_svd, aa_svd,
tucker2, tucker2_nl and capsule_tucker; CP and TT have none and raise :class:`RankscopeError`.

References
----------
Nakajima, Sugiyama, Babacan, Tomioka. "Global Analytic Solution of Fully-observed Variational
Bayesian Matrix Factorization." JMLR 14, 2013.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import torch
from torch import nn

from core.decompose._specs import LayerSpec, plan_cost
from core.decompose.rank import Rank, as_rank, max_ranks
from core.decompose.registry import Cost, Method, get_method
from core.errors import RankscopeError


def _method(method: str | Method) -> Method:
    return get_method(method) if isinstance(method, str) else method


def dense_cost(module: nn.Module, input_hw: tuple[int, int] | None = None) -> Cost:
    """Params and FLOPs (one sample) of a dense Linear, Conv2d, ConvTranspose2d or capsule layer."""
    W = getattr(module, "W", None)
    if isinstance(W, torch.Tensor) and W.dim() == 4:  # CapsuleRouting: predictions are its only counted FLOPs
        return Cost(W.numel(), 2 * W.numel())
    if not isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
        raise RankscopeError(f"no dense cost for {type(module).__name__}: expected a Linear, Conv2d, ConvTranspose2d or CapsuleRouting")
    return Cost(*plan_cost([LayerSpec.of(module)], input_hw))


def _spectra(module: nn.Module, method: Method, calibration: torch.Tensor | None):
    method.require(module)
    if not hasattr(method, "spectra"):
        raise RankscopeError(
            f"{method.name} has no singular values to choose a rank from; use ratio_rank, "
            "or one of svd, spatial_svd, aa_svd, tucker2, tucker2_nl, capsule_tucker"
        )
    return method.spectra(module, calibration)


def energy_rank(module: nn.Module, method: str | Method, energy: float, calibration: torch.Tensor | None = None) -> Rank:
    """The smallest rank keeping at least ``energy`` (0 < energy <= 1) of the squared singular values."""
    if not 0 < energy <= 1:
        raise RankscopeError(f"energy {energy!r} must be a fraction in (0, 1]")
    method = _method(method)
    ranks = []
    for svd in _spectra(module, method, calibration):
        power = (svd.S**2).sum(0)  # (k,) summed over groups
        kept = power.cumsum(0) / power.sum().clamp_min(1e-300)
        ranks.append(min(int((kept < energy - 1e-12).sum()) + 1, len(power)))
    return as_rank(method, ranks)


def ratio_rank(module: nn.Module, method: str | Method, ratio: float, *, kind: str = "params", input_hw: tuple[int, int] | None = None) -> Rank:
    """The largest rank whose ``kind`` ("params" or "flops") is at most ``ratio`` times the dense layer's.

    If even the smallest rank costs more, the smallest rank is returned (check ``method.cost``).
    """
    if kind not in ("params", "flops"):
        raise RankscopeError(f"kind {kind!r} must be 'params' or 'flops'")
    method = _method(method)
    method.require(module)
    if input_hw is None and kind == "params" and isinstance(module, nn.Conv2d):
        # parameters do not depend on the input size: any size the kernel fits in will do
        input_hw = tuple(d * (k - 1) + 1 for d, k in zip(module.dilation, module.kernel_size))
    budget = ratio * getattr(dense_cost(module, input_hw), kind)
    tops = max_ranks(method, module)
    steps = max(tops)

    def rank_at(t: int):
        return as_rank(method, [max(1, round(t * top / steps)) for top in tops])

    lo, hi = 1, steps  # cost is non-decreasing in t: binary search the last t within budget
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if getattr(method.cost(module, rank_at(mid), input_hw), kind) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return rank_at(lo)


def _tau(x: np.ndarray, alpha: float) -> np.ndarray:
    return 0.5 * (x - (1 + alpha) + np.sqrt((x - (1 + alpha)) ** 2 - 4 * alpha))


def evbmf_rank(singular_values, shape: tuple[int, int]) -> int:
    """Rank chosen by analytic empirical VBMF for a matrix of ``shape`` with these (all) singular values.

    The noise variance ``sigma^2`` minimises the free energy over the interval where the paper shows
    it lies; components with ``gamma_h^2 > M sigma^2 (1 + tau)(1 + alpha / tau)`` are kept.
    """
    L, M = sorted(shape)
    s = np.sort(np.asarray(singular_values, dtype=np.float64))[::-1][:L]
    s = np.concatenate([s, np.zeros(L - len(s))])
    alpha = L / M
    tau_bar = 2.5129 * math.sqrt(alpha)
    x_bar = (1 + tau_bar) * (1 + alpha / tau_bar)
    power = s**2
    if power.sum() <= 0:
        return 0

    def free_energy(sigma2: float) -> float:
        x = power / (M * sigma2)
        big = x[x > x_bar]
        tau = _tau(big, alpha)
        # sum_h psi0(x_h) up to constants in sigma2, plus psi1 for the components that survive
        return float(x.sum() + L * math.log(sigma2) + np.sum(np.log(tau + 1) + alpha * np.log(tau / alpha + 1) - tau))

    upper = power.sum() / (L * M)
    first_noise = min(max(min(math.ceil(L / (1 + alpha)) - 1, L), 0), L - 1)  # index after the largest possible signal rank
    lower = max(power[first_noise] / (M * x_bar), power[first_noise:].mean() / M, upper * 1e-12)
    if lower >= upper:
        sigma2 = upper
    else:
        grid = np.geomspace(lower, upper, 400)
        values = [free_energy(v) for v in grid]
        best = int(np.argmin(values))
        a, b = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
        for _ in range(60):  # golden-section refinement between the neighbours of the best grid point
            c, d = b - (b - a) / 1.618033988749895, a + (b - a) / 1.618033988749895
            a, b = (a, d) if free_energy(c) < free_energy(d) else (c, b)
        sigma2 = min((grid[best], (a + b) / 2), key=free_energy)
    return int((power / (M * sigma2) > x_bar).sum())


def vbmf_rank(module: nn.Module, method: str | Method, calibration: torch.Tensor | None = None) -> Rank:
    """Rank by analytic EVBMF of each truncated matrix (the largest over groups); at least 1."""
    method = _method(method)
    ranks = []
    for svd in _spectra(module, method, calibration):
        per_group = [evbmf_rank(S.cpu().numpy(), svd.shape) for S in svd.S]
        ranks.append(min(max(1, *per_group), svd.S.shape[1]))
    return as_rank(method, ranks)


RULES = {"energy": energy_rank, "ratio": ratio_rank, "vbmf": vbmf_rank}


def select_ranks(
    layers: Mapping[str, nn.Module],
    method: str | Method,
    rule: str,
    value: float | None = None,
    *,
    kind: str = "params",
    input_hws: Mapping[str, tuple[int, int]] | None = None,
    calibration: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, Rank]:
    """A rank per named layer by ``rule`` ("energy": value = fraction, "ratio": value = cost ratio, "vbmf")."""
    if rule not in RULES:
        raise RankscopeError(f"unknown rank rule {rule!r}; expected one of {', '.join(RULES)}")
    if rule != "vbmf" and value is None:
        raise RankscopeError(f"rank rule {rule!r} needs a value")
    input_hws, calibration = input_hws or {}, calibration or {}
    ranks = {}
    for name, module in layers.items():
        if rule == "energy":
            ranks[name] = energy_rank(module, method, value, calibration.get(name))
        elif rule == "ratio":
            ranks[name] = ratio_rank(module, method, value, kind=kind, input_hw=input_hws.get(name))
        else:
            ranks[name] = vbmf_rank(module, method, calibration.get(name))
    return ranks

"""One layer under a microscope: its spectrum, the energy a rank keeps, and the output error versus rank.

Ranks here speak each method's vocabulary (an int, or a tuple for Tucker-like methods); a *fraction*
``f`` in (0, 1] of the full rank maps onto it by scaling every mode, ``max(1, round(f * max_rank))``,
as :func:`core.decompose.ratio_rank` does.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from core.decompose.registry import Method, get_method
from core.errors import RankscopeError

# What each rank entry cuts, per method arity (the Tucker order is (input, output); capsule modes i, j, d, k).
MODE_NAMES = {
    1: ("rank",),
    2: ("input rank", "output rank"),
    4: ("input capsules", "output capsules", "output dim", "input dim"),
}


def mode_names(method: Method) -> tuple[str, ...]:
    """Labels for the entries of ``method``'s rank."""
    return MODE_NAMES.get(method.rank_arity, tuple(f"rank {i + 1}" for i in range(method.rank_arity)))


def max_ranks(method: Method, module: nn.Module) -> tuple[int, ...]:
    """``method.max_rank(module)`` as a tuple, one entry per mode."""
    top = method.max_rank(module)
    return (top,) if method.rank_arity == 1 else tuple(top)


def as_rank(method: Method, values: tuple[int, ...] | list[int]) -> int | tuple[int, ...]:
    """A rank in the method's vocabulary from one value per mode."""
    return int(values[0]) if method.rank_arity == 1 else tuple(int(v) for v in values)


def rank_at(method: Method, module: nn.Module, fraction: float) -> int | tuple[int, ...]:
    """The rank keeping ``fraction`` (0, 1] of each mode's full rank, at least 1 per mode."""
    if not 0 < fraction <= 1:
        raise RankscopeError(f"rank fraction {fraction!r} must be in (0, 1]")
    return as_rank(method, [max(1, round(fraction * top)) for top in max_ranks(method, module)])


def rank_grid(method: Method, module: nn.Module, points: int = 10) -> list[int | tuple[int, ...]]:
    """Up to ``points`` distinct ranks spread from 1 to full rank along the largest mode."""
    steps = max(max_ranks(method, module))
    fractions = np.unique(np.linspace(1, steps, num=min(points, steps)).round().astype(int)) / steps
    ranks: list = []
    for f in fractions:
        rank = rank_at(method, module, float(f))
        if rank not in ranks:
            ranks.append(rank)
    return ranks


@dataclass(frozen=True)
class Spectrum:
    """Singular values of the matrix one rank entry truncates (summed over groups as energies)."""

    mode: str
    values: np.ndarray  # descending

    def energy_kept(self, rank: int) -> float:
        """Fraction of the squared singular values the first ``rank`` keep."""
        power = self.values**2
        total = power.sum()
        return float(power[:rank].sum() / total) if total > 0 else 1.0


def spectra(method: Method, module: nn.Module, calibration: torch.Tensor | None = None) -> list[Spectrum]:
    """One :class:`Spectrum` per rank entry; ``[]`` for methods without singular values (CP, TT)."""
    if not hasattr(method, "spectra"):
        return []
    out = []
    for name, svd in zip(mode_names(method), method.spectra(module, calibration)):
        power = (svd.S.to(torch.float64) ** 2).sum(0)  # (k,) summed over groups
        out.append(Spectrum(name, power.sqrt().cpu().numpy()))
    return out


def output_error(original: nn.Module, replacement: nn.Module, inputs: torch.Tensor) -> float:
    """Relative error ``||f'(x) - f(x)|| / ||f(x)||`` of a replacement's outputs on ``inputs`` (Frobenius norms)."""
    with torch.inference_mode():
        want = original(inputs).double()
        got = replacement(inputs).double()
    norm = want.norm().item()
    return (got - want).norm().item() / norm if norm > 0 else (got - want).norm().item()


def error_curve(
    module: nn.Module,
    method: str | Method,
    inputs: torch.Tensor,
    ranks: list,
    *,
    calibration: torch.Tensor | None = None,
    cancel: Callable[[], bool] | None = None,
) -> pd.DataFrame:
    """Output error of the layer built at each rank, on ``inputs`` (a batch of the layer's own inputs).

    Returns a table with ``rank`` (as text), ``fraction`` (of the largest mode's full rank), ``params``
    and ``error``. ``calibration`` goes to data-aware methods. Stops early (returning what it has)
    when ``cancel()`` is true.
    """
    method = get_method(method) if isinstance(method, str) else method
    tops = max_ranks(method, module)
    rows = []
    for rank in ranks:
        if cancel is not None and cancel():
            break
        built = method.build(module, rank, calibration=calibration)
        values = (rank,) if method.rank_arity == 1 else tuple(rank)
        rows.append({
            "rank": "x".join(map(str, values)),
            "fraction": max(v / t for v, t in zip(values, tops)),
            "params": sum(p.numel() for p in built.parameters()),
            "error": output_error(module, built, inputs),
        })
    return pd.DataFrame(rows, columns=["rank", "fraction", "params", "error"])


def default_method(module: nn.Module) -> str | None:
    """The data-free method proposed first for a layer, or ``None`` when no method applies.

    Tucker-2 for an ungrouped conv with a spatial kernel (it shrinks both channel sides), SVD for
    Linear and 1x1 or grouped convs, capsule Tucker for a capsule layer; else the first that applies.
    """
    from core.decompose.registry import applicable_methods

    usable = [m for m in applicable_methods(module) if not get_method(m).needs_calibration]
    for choice in ("capsule_tucker", "tucker2" if isinstance(module, nn.Conv2d) and module.kernel_size != (1, 1) else "", "svd"):
        if choice in usable:
            return choice
    return usable[0] if usable else None


FITTED_PER_RANK = ("tucker2_nl",)  # nested factors, but each build runs an optimiser


def curve_points(method: Method) -> int:
    """How many ranks an error curve samples: fewer for methods that fit each rank anew (CP, TT, nonlinear)."""
    return 10 if getattr(method, "nested", False) and method.name not in FITTED_PER_RANK else 5


def layer_input(model: nn.Module, path: str, images: torch.Tensor) -> torch.Tensor:
    """The input the module at ``path`` receives when ``model`` runs on ``images`` (one no-grad pass)."""
    from core.layers import layer_inputs

    captured = layer_inputs(model, [path], images)
    if path not in captured:
        raise RankscopeError(f"{path} is not called in the forward pass")
    return captured[path]


def build_layer(model: nn.Module, path: str, method: str | Method, rank, *, images: torch.Tensor | None = None) -> nn.Module:
    """The module at ``path`` rebuilt by ``method`` at ``rank``; data-aware methods calibrate on the layer's
    inputs when ``model`` runs on ``images`` (model inputs, e.g. :func:`core.data.calibration_batch`).

    Raises
    ------
    RankscopeError
        A data-aware method without ``images``, a method that does not apply, a rank out of range.
    """
    method = get_method(method) if isinstance(method, str) else method
    module = model.get_submodule(path)
    calibration = None
    if method.needs_calibration:
        if images is None:
            raise RankscopeError(f"{method.name} is data-aware: it needs calibration images (a dataset for the model)")
        calibration = layer_input(model, path, images)
    return method.build(module, rank, calibration=calibration).eval()

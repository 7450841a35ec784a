"""One layer under a microscope: its spectrum, the energy a rank keeps, and the output error versus rank.

Ranks are :data:`core.decompose.rank.Rank` values; fractions of the full rank map onto them by
:func:`core.decompose.rank.rank_at`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from core.decompose.rank import Rank, mode_names, rank_fraction, rank_text
from core.decompose.registry import Method, applicable_methods, get_method
from core.errors import RankscopeError
from core.layers.modules import layer_input

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
    ranks: list[Rank],
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
    rows = []
    for rank in ranks:
        if cancel is not None and cancel():
            break
        built = method.build(module, rank, calibration=calibration)
        rows.append({
            "rank": rank_text(rank),
            "fraction": rank_fraction(method, module, rank),
            "params": sum(p.numel() for p in built.parameters()),
            "error": output_error(module, built, inputs),
        })
    return pd.DataFrame(rows, columns=["rank", "fraction", "params", "error"])


def default_method(module: nn.Module) -> str | None:
    """The data-free method proposed first for a layer, or ``None`` when no method applies.

    Tucker-2 for an ungrouped conv with a spatial kernel (it shrinks both channel sides), SVD for
    Linear and 1x1 or grouped convs, capsule Tucker for a capsule layer; else the first that applies.
    """
    usable = [m for m in applicable_methods(module) if not get_method(m).needs_calibration]
    for choice in ("capsule_tucker", "tucker2" if isinstance(module, nn.Conv2d) and module.kernel_size != (1, 1) else "", "svd"):
        if choice in usable:
            return choice
    return usable[0] if usable else None


FITTED_PER_RANK = ("tucker2_nl",)  # nested factors, but each build runs an optimiser


def curve_points(method: Method) -> int:
    """How many ranks an error curve samples: fewer for methods that fit each rank anew (CP, TT, nonlinear)."""
    return 10 if getattr(method, "nested", False) and method.name not in FITTED_PER_RANK else 5


def build_layer(model: nn.Module, path: str, method: str | Method, rank: Rank, *, images: torch.Tensor | None = None) -> nn.Module:
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

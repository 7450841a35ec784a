"""Nonlinear Tucker-2: the Tucker-2 layers with a PReLU after the first 1x1, fitted to the original layer's outputs.

The layers are 1x1 ``C -> r_in``, PReLU (one slope per channel), ``k x k`` core ``r_in -> r_out``, 1x1
``r_out -> O``. They start from the linear Tucker-2 factors (HOSVD, shared with ``tucker2``'s cache)
and then Adam fits all of them, slopes included, to the original layer's outputs on the calibration
inputs (mean squared error, full batch).

Why PReLU with slopes starting at 1: at initialisation the layer *is* the linear Tucker-2 (a fixed
ReLU or GELU would throw away part of every channel before any fitting and start from a worse
point), and Adam can bend each channel into a leaky ReLU wherever that lowers the output error. The
fit keeps the best parameters it has seen on the calibration data, initial ones included, so it
never ends worse than its linear initialisation there. It costs ``r_in`` more parameters than linear
Tucker-2 at the same ranks and no counted FLOPs (an elementwise op).

The fitted factors are cached per (weight, rank, calibration batch, steps, lr), so a rank sweep or a
page re-run does not fit twice; every ``build`` still returns a fresh module.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from core.decompose._cache import CACHE, tensor_key
from core.decompose._specs import LayerSpec
from core.decompose.registry import get_method, register_method
from core.decompose.tucker2 import Tucker2
from core.errors import RankscopeError
from core.options import keyword_defaults


def fit_outputs(replacement: nn.Module, original: nn.Module, calibration: torch.Tensor, *, steps: int = 300, lr: float = 1e-3) -> list[float]:
    """Fit ``replacement``'s parameters to ``original``'s outputs on ``calibration`` with Adam (full batch, MSE).

    ``replacement`` ends with the parameters of lowest calibration error seen (the starting ones
    included). Returns the error before each step and after the last one.
    """
    weight = next(replacement.parameters())
    x = calibration.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        target = original(x)
    optimizer = torch.optim.Adam(replacement.parameters(), lr=lr)
    history: list[float] = []
    best_loss, best_state = float("inf"), None
    for step in range(steps + 1):
        with torch.enable_grad():
            loss = F.mse_loss(replacement(x), target)
        history.append(loss.item())
        if history[-1] < best_loss:
            best_loss, best_state = history[-1], copy.deepcopy(replacement.state_dict())
        if step == steps:
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    replacement.load_state_dict(best_state)
    return history


@register_method
class NonlinearTucker2(Tucker2):
    name = "tucker2_nl"
    needs_calibration = True
    layer_types = (nn.Conv2d,)
    options = keyword_defaults(fit_outputs)

    def plan(self, module: nn.Conv2d, rank: tuple[int, int]) -> list[LayerSpec]:
        first, *rest = super().plan(module, rank)
        return [first, LayerSpec("prelu", rank[0], rank[0]), *rest]

    def factorization(self, module: nn.Conv2d, calibration=None, **options):
        """The linear Tucker-2 factorization it starts from (one cache entry shared with ``tucker2``)."""
        self.require(module)
        self.resolve_options(options)
        return get_method("tucker2").factorization(module)

    def layer_weights(self, module: nn.Conv2d, rank, factors) -> list[torch.Tensor | None]:
        first, *rest = super().layer_weights(module, rank, factors)
        return [first, None, *rest]  # None: the PReLU keeps its slopes of 1

    def build(self, module: nn.Conv2d, rank, *, calibration: torch.Tensor | None = None, **options) -> nn.Module:
        """Linear Tucker-2 factors fitted by ``fit_outputs`` (options ``steps``, ``lr``) to ``module`` on ``calibration``."""
        rank = self.validate_rank(module, rank)
        fit = self.resolve_options(options)
        if calibration is None:
            raise RankscopeError(f"{self.name} is data-aware: pass calibration= a batch of the layer's inputs")
        key = (self.name, rank, tensor_key(calibration), tuple(sorted(fit.items())))
        fitted = CACHE.get(module.weight, key, lambda: self._fit(module, rank, calibration, fit))
        replacement = super().build(module, rank)
        replacement.load_state_dict(fitted)  # a fresh module per call: callers may train or edit it freely
        return replacement

    def _fit(self, module: nn.Conv2d, rank, calibration: torch.Tensor, fit: dict) -> dict[str, torch.Tensor]:
        replacement = super().build(module, rank)
        fit_outputs(replacement, module, calibration, **fit)
        return {k: v.detach().clone() for k, v in replacement.state_dict().items()}

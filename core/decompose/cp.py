"""CP decomposition of a conv (Lebedev et al., 2015): 1x1 -> ``kh x 1`` depthwise -> ``1 x kw`` depthwise -> 1x1.

``W[o, c, a, b] ~ sum_r A_o[o, r] A_c[c, r] A_h[a, r] A_w[b, r]``, fitted by alternating least
squares (``tensorly.decomposition.parafac``, numpy backend, float64, SVD initialisation, fixed seed).
The depthwise convs carry stride, padding and dilation along their axis.

Full rank: the CP rank of a tensor is not computable in general; ``max_rank`` is the bound
``prod(shape) / max(shape)`` (a rank-one term per column of the unfolding along the longest mode),
at which the explicit decomposition ``W = sum_cols unfolding[:, col] (x) one-hot ...`` is exact and is
used instead of ALS. Below that, ALS gives an approximation whose error depends on the tensor.

CP is not nested (the best rank-r terms are not the first r of a rank-(r+1) fit): factors are
cached per rank.

References
----------
Lebedev, Ganin, Rakhuba, Oseledets, Lempitsky. "Speeding-up Convolutional Neural Networks Using
Fine-tuned CP-Decomposition." ICLR 2015.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import tensorly as tl
import torch
from tensorly.decomposition import parafac
from torch import nn

from core.decompose._base import BaseMethod
from core.decompose._specs import LayerSpec
from core.decompose.registry import register_method
from core.decompose.tucker2 import unfold
from core.options import keyword_defaults


def cp_max_rank(shape: tuple[int, ...]) -> int:
    """The rank at which an exact CP decomposition is always available: ``prod(shape) / max(shape)``."""
    return math.prod(shape) // max(shape)


def _balance(weights: torch.Tensor, factors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Absorb ``weights`` into the factors, giving every factor's column the same norm."""
    norms = [f.norm(dim=0).clamp_min(1e-300) for f in factors]
    scale = (weights.abs() * math.prod(norms)) ** (1.0 / len(factors))
    out = [f / n * scale for f, n in zip(factors, norms)]
    out[0] = out[0] * torch.sign(weights).masked_fill(weights == 0, 1.0)
    return out


def _exact_cp(tensor: torch.Tensor) -> list[torch.Tensor]:
    """An exact CP of rank ``cp_max_rank``: one term per column of the unfolding along the longest mode."""
    shape = tuple(tensor.shape)
    longest = int(np.argmax(shape))
    others = [m for m in range(tensor.dim()) if m != longest]
    rank = cp_max_rank(shape)
    index = np.unravel_index(np.arange(rank), [shape[m] for m in others])  # column -> index along each other mode
    factors = [None] * tensor.dim()
    factors[longest] = unfold(tensor, longest)
    for mode, idx in zip(others, index):
        factors[mode] = torch.nn.functional.one_hot(torch.as_tensor(idx), shape[mode]).T.to(tensor)
    return factors


def cp_factors(tensor: torch.Tensor, rank: int, *, n_iter_max: int = 500, tol: float = 1e-10, random_state: int = 0) -> list[torch.Tensor]:
    """CP factors (one (dim, rank) float64 matrix per mode, weights absorbed) of ``tensor`` at ``rank``."""
    tensor = tensor.detach().to(torch.float64).cpu()
    if rank >= cp_max_rank(tuple(tensor.shape)):
        factors = _exact_cp(tensor)
        return _balance(torch.ones(rank, dtype=torch.float64), factors)
    with tl.backend_context("numpy"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Trying to compute SVD with n_eigenvecs")  # svd init when rank > a mode's size
        cp = parafac(tensor.numpy(), rank, n_iter_max=n_iter_max, tol=tol, init="svd", normalize_factors=True, random_state=random_state)
    weights, factors = cp
    return _balance(torch.from_numpy(np.asarray(weights)), [torch.from_numpy(np.asarray(f)) for f in factors])


@register_method
class CP(BaseMethod):
    name = "cp"
    nested = False
    options = keyword_defaults(cp_factors)

    def max_rank(self, module: nn.Conv2d) -> int:
        return cp_max_rank(tuple(module.weight.shape))

    def plan(self, module: nn.Conv2d, rank: int) -> list[LayerSpec]:
        dense = LayerSpec.of(module)
        return [
            dense.pointwise(dense.in_ch, rank),
            dense.axis(0, rank, rank, groups=rank),
            dense.axis(1, rank, rank, groups=rank),
            dense.pointwise(rank, dense.out_ch, bias=dense.bias),
        ]

    def factors_at(self, module: nn.Conv2d, rank: int, **options) -> list[torch.Tensor]:
        return cp_factors(module.weight, rank, **options)

    def layer_weights(self, module: nn.Conv2d, rank: int, factors) -> list[torch.Tensor]:
        A_o, A_c, A_h, A_w = factors  # (O, R), (C, R), (kh, R), (kw, R)
        return [A_c.T, A_h.T, A_w.T, A_o]

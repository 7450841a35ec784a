"""``nmf``: Hamburger with non-negative matrix factorization (the paper's NMF2D), per head.

Each head's non-negative tokens ``X`` (``N x d``, the transpose of the paper's ``d x N``) are
factored ``X ~ C D^T`` with bases ``D`` (``d x r``) and coefficients ``C`` (``N x r``) by Lee and
Seung's multiplicative updates, which never increase ``||X - C D^T||^2``::

    C <- C * (X D) / (C D^T D)        D <- D * (X^T C) / (D C^T C)

``C`` starts as ``softmax(X D)`` over the ``r`` bases and ``D`` from random unit columns, as in the
reference code; the output is ``C D^T``. Every product is linear in ``N``: ``O(N d r)`` time, and
``O(N r)`` memory for ``C``.

References
----------
Geng et al., "Is Attention Better Than Matrix Decomposition?", ICLR 2021 (NMF2D in the Hamburger code).
Lee and Seung, "Algorithms for Non-negative Matrix Factorization", NeurIPS 2000.
"""
from __future__ import annotations

from functools import partial

import torch

from core.attention._ham import EPS, Hamburger, iterate
from core.attention.registry import register_variant


def nmf_objective(x: torch.Tensor, bases: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """``||x - coef bases^T||^2`` summed over the batch; ``x (..., N, d)``, ``bases (..., d, r)``, ``coef (..., N, r)``."""
    return (x - coef @ bases.transpose(-1, -2)).square().sum()


def nmf_step(x: torch.Tensor, bases: torch.Tensor, coef: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One multiplicative update of ``coef``, then of ``bases``.

    Without autograd the (N, r) quotient is formed in place (the same numbers, half the temporaries: the
    updates run K - 1 times under no_grad, and at long N these (N, r) tensors are the layer's peak memory).
    """
    if torch.is_grad_enabled():
        coef = coef * (x @ bases) / (coef @ (bases.transpose(-1, -2) @ bases) + EPS)
    else:
        coef = coef * (x @ bases).div_((coef @ (bases.transpose(-1, -2) @ bases)).add_(EPS))
    bases = bases * (x.transpose(-1, -2) @ coef) / (bases @ (coef.transpose(-1, -2) @ coef) + EPS)
    return bases, coef


def nmf(x: torch.Tensor, bases: torch.Tensor, steps: int, *, one_step: bool = True,
        history: list[float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Factor non-negative ``x`` ``(..., N, d)`` from initial ``bases`` ``(..., d, r)``; return ``(bases, coef)``.

    Parameters
    ----------
    steps : multiplicative updates of both factors.
    one_step : differentiate only the last update (see :mod:`core.attention._ham`).
    history : when a list, receives :func:`nmf_objective` at the start and after every update.
    """
    with torch.set_grad_enabled(torch.is_grad_enabled() and not one_step):
        coef = torch.softmax(x @ bases, dim=-1)  # (..., N, r)
    return iterate(partial(nmf_step, x), (bases, coef), steps, one_step=one_step,
                   objective=partial(nmf_objective, x), history=history)


@register_variant
class NMFAttention(Hamburger):
    """Hamburger with NMF of rank ``rank`` per head, ``steps`` updates.

    Parameters are those of :class:`~core.attention._ham.Hamburger`; ``rank`` is the bases per head.
    """

    variant = "nmf"

    def __init__(self, dim: int, num_heads: int, head_dim: int, *, rank: int = 8, steps: int = 6,
                 one_step: bool = True, readout: int = 0) -> None:
        super().__init__(dim, num_heads, head_dim, rank, steps, one_step, readout)
        self.register_buffer("bases", self.fixed_bases((num_heads, head_dim, rank)))

    def ham(self, x: torch.Tensor) -> torch.Tensor:
        bases, coef = nmf(x, self.init_factor(self.bases, x.shape[0]), self.steps, one_step=self.one_step)
        return coef @ bases.transpose(-1, -2)

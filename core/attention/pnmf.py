"""``pnmf``: Hamburger with projective NMF, one non-negative factor and no coefficient solve.

Orientation: each head's non-negative tokens ``X`` (``N x d``) are projected onto the span of a
non-negative ``W`` (``d x r``) on the FEATURE side, ``X ~ X W W^T``, i.e. the paper-layout problem
``min_{W >= 0} ||X' - W W^T X'||`` with ``X' = X^T`` (``d x N``). The updates then only need the
``d x d`` Gram matrix ``A = X'X'^T = X^T X``, computed once in ``O(N d^2)``; the token-side
orientation would need the ``N x N`` Gram and quadratic cost. Each update is ``O(d^2 r)``,
independent of ``N``, and the output ``(X W) W^T`` costs ``O(N d r)``.

The update is Yuan and Oja's (in the form of Yang and Oja 2010)::

    W <- W * (2 A W) / (W W^T A W + A W W^T W)

started from ``W`` rescaled to spectral norm 1 (so ``W W^T`` is a contraction). This update has no
monotonicity guarantee (Yang and Oja 2010 discuss its convergence); from unit-length random columns
it oscillates here (the first step overshoots), while from the rescaled start it decreased the
objective at every step we tried, which ``tests/attention`` checks. The objective follows from ``A``
alone: ``||X' - W W^T X'||^2 = tr A - 2 tr(W^T A W) + tr(W^T W W^T A W)``.

References
----------
Yuan and Oja, "Projective Nonnegative Matrix Factorization for Image Compression and Feature
Extraction", SCIA 2005. Yang and Oja, "Linear and Nonlinear Projective Nonnegative Matrix
Factorization", IEEE Trans. Neural Networks 21(5), 2010.
"""
from __future__ import annotations

from functools import partial

import torch

from core.attention._ham import EPS, Hamburger, iterate
from core.attention.registry import register_variant


def pnmf_objective(gram: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``||X' - W W^T X'||^2`` summed over the batch, from the Gram ``gram = X^T X`` ``(..., d, d)`` and ``w (..., d, r)``."""
    wtaw = w.transpose(-1, -2) @ gram @ w  # (..., r, r)
    wtw = w.transpose(-1, -2) @ w
    trace = partial(torch.diagonal, dim1=-2, dim2=-1)
    return (trace(gram).sum(-1) - 2 * trace(wtaw).sum(-1) + (wtw * wtaw).sum((-2, -1))).sum()


def pnmf_step(gram: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor]:
    """One Yuan-Oja multiplicative update of ``w``."""
    aw = gram @ w  # (..., d, r)
    wt = w.transpose(-1, -2)
    return (w * (2 * aw) / (w @ (wt @ aw) + aw @ (wt @ w) + EPS),)


def pnmf(x: torch.Tensor, w: torch.Tensor, steps: int, *, one_step: bool = True,
         history: list[float] | None = None) -> torch.Tensor:
    """The projection factor of non-negative ``x`` ``(..., N, d)`` from initial ``w`` ``(..., d, r)`` (any scale).

    Parameters
    ----------
    steps, one_step : as :func:`core.attention.nmf.nmf`.
    history : when a list, receives :func:`pnmf_objective` at the start and after every update.
    """
    gram = x.transpose(-1, -2) @ x  # (..., d, d): the only place N enters
    w = w / torch.linalg.matrix_norm(w, ord=2, keepdim=True)  # spectral norm 1: see the module docstring
    (w,) = iterate(partial(pnmf_step, gram), (w,), steps, one_step=one_step,
                   objective=partial(pnmf_objective, gram), history=history)
    return w


@register_variant
class PNMFAttention(Hamburger):
    """Hamburger with projective NMF of rank ``rank`` per head; the output is ``(X W) W^T``.

    Parameters are those of :class:`~core.attention._ham.Hamburger`; ``rank`` is the columns of ``W``.
    """

    variant = "pnmf"

    def __init__(self, dim: int, num_heads: int, head_dim: int, *, rank: int = 8, steps: int = 6,
                 one_step: bool = True, readout: int = 0) -> None:
        super().__init__(dim, num_heads, head_dim, rank, steps, one_step, readout)
        self.register_buffer("bases", self.fixed_bases((num_heads, head_dim, rank)))

    def ham(self, x: torch.Tensor) -> torch.Tensor:
        w = pnmf(x, self.init_factor(self.bases, x.shape[0]), self.steps, one_step=self.one_step)
        return (x @ w) @ w.transpose(-1, -2)

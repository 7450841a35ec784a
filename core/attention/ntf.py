"""``ntf``: Hamburger with a non-negative CP (PARAFAC) factorization of each sample's (heads x tokens x features) tensor.

Where :mod:`~core.attention.nmf` factors each head on its own, here the non-negative tensor
``X`` (``h x N x d``) of one sample is a sum of ``r`` rank-one terms shared by all heads::

    X[i, n, j] ~ sum_k A[i, k] P[n, k] F[j, k]

with head loadings ``A`` (``h x r``), token loadings ``P`` (``N x r``) and feature loadings ``F``
(``d x r``), so a component can couple heads. Each factor is updated in turn by the multiplicative
rule for its non-negative least-squares subproblem (Welling and Weber's NTF, Lee-Seung per mode),
which never increases ``||X - [[A, P, F]]||^2``; e.g. for the tokens::

    P <- P * X_(2) (F (.) A) / (P (A^T A * F^T F))

``P`` starts as ``softmax`` of its numerator (as NMF's coefficients), ``A`` and ``F`` from random unit
columns. Linear in ``N``: each mode product goes through the ``(h, N, r)`` tensor ``X F``, never a
Khatri-Rao product of size ``N d r``; time ``O(h N d r)``, memory ``O(h N r)``.

References
----------
Welling and Weber, "Positive tensor factorization", Pattern Recognition Letters 22, 2001.
Kolda and Bader, "Tensor Decompositions and Applications", SIAM Review 51(3), 2009 (CP and its unfoldings).
"""
from __future__ import annotations

from functools import partial

import torch

from core.attention._ham import EPS, Hamburger, iterate
from core.attention.registry import register_variant


def cp_reconstruct(heads: torch.Tensor, tokens: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """``[[A, P, F]]`` ``(B, h, N, d)`` from ``heads (B, h, r)``, ``tokens (B, N, r)``, ``features (B, d, r)``."""
    return (tokens.unsqueeze(1) * heads.unsqueeze(2)) @ features.unsqueeze(1).transpose(-1, -2)


def ntf_objective(x: torch.Tensor, heads: torch.Tensor, tokens: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """``||x - [[heads, tokens, features]]||^2`` summed over the batch."""
    return (x - cp_reconstruct(heads, tokens, features)).square().sum()


def gram(factor: torch.Tensor) -> torch.Tensor:
    """``factor^T factor`` ``(B, r, r)``."""
    return factor.transpose(-1, -2) @ factor


def token_numerator(x: torch.Tensor, heads: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """``X_(2) (F (.) A)`` ``(B, N, r)``: ``sum_i A[i, k] (X[i] F)[n, k]``."""
    return ((x @ features.unsqueeze(1)) * heads.unsqueeze(2)).sum(1)


def ntf_step(x: torch.Tensor, heads: torch.Tensor, tokens: torch.Tensor,
             features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One multiplicative update of the token, head and feature loadings, in that order."""
    tokens = tokens * token_numerator(x, heads, features) / (tokens @ (gram(heads) * gram(features)) + EPS)
    xf = x @ features.unsqueeze(1)  # (B, h, N, r)
    heads = heads * (xf * tokens.unsqueeze(1)).sum(2) / (heads @ (gram(tokens) * gram(features)) + EPS)
    xp = x.transpose(-1, -2) @ tokens.unsqueeze(1)  # (B, h, d, r)
    features = features * (xp * heads.unsqueeze(2)).sum(1) / (features @ (gram(heads) * gram(tokens)) + EPS)
    return heads, tokens, features


def ntf(x: torch.Tensor, heads: torch.Tensor, features: torch.Tensor, steps: int, *, one_step: bool = True,
        history: list[float] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CP-factor non-negative ``x`` ``(B, h, N, d)`` from initial head and feature loadings; return all three.

    Parameters
    ----------
    steps, one_step : as :func:`core.attention.nmf.nmf`.
    history : when a list, receives :func:`ntf_objective` at the start and after every update.
    """
    with torch.set_grad_enabled(torch.is_grad_enabled() and not one_step):
        tokens = torch.softmax(token_numerator(x, heads, features), dim=-1)  # (B, N, r)
    return iterate(partial(ntf_step, x), (heads, tokens, features), steps, one_step=one_step,
                   objective=partial(ntf_objective, x), history=history)


@register_variant
class NTFAttention(Hamburger):
    """Hamburger with a rank-``rank`` non-negative CP factorization over heads, tokens and features.

    Parameters are those of :class:`~core.attention._ham.Hamburger`; ``rank`` is the CP components per sample.
    """

    variant = "ntf"

    def __init__(self, dim: int, num_heads: int, head_dim: int, *, rank: int = 16, steps: int = 6,
                 one_step: bool = True, readout: int = 0) -> None:
        super().__init__(dim, num_heads, head_dim, rank, steps, one_step, readout)
        self.register_buffer("heads_init", self.fixed_bases((num_heads, rank)))
        self.register_buffer("features_init", self.fixed_bases((head_dim, rank)))

    def ham(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        heads, tokens, features = ntf(x, self.init_factor(self.heads_init, batch), self.init_factor(self.features_init, batch),
                                      self.steps, one_step=self.one_step)
        return cp_reconstruct(heads, tokens, features)

"""Activation-aware SVD (SVD-LLM): truncate the weight in the metric of the layer's own inputs.

With ``X`` the calibration inputs (for a conv: the unfolded input patches, padding mode included)
and ``L`` the Cholesky factor of ``X^T X + damping I``, the SVD of the whitened weight
``W L = U S V^T`` is truncated and un-whitened: ``W' = U_r S_r V_r^T L^{-1}``. Without damping this
minimises ``||(W - W') X||_F`` over rank-``r`` matrices (Eckart-Young in the whitened space). With
damping ``lam`` it minimises ``||(W - W')X||^2 + lam ||W - W'||^2``, which still never exceeds plain
SVD's output error on the calibration data: plain SVD minimises the second term, so trading it away
can only lower the first.

Damping: ``lam = damping * mean(diag(X^T X))``, default ``damping = 0.01`` (GPTQ's choice): it makes
``X^T X`` positive definite when the inputs do not span every direction (dead channels, zero padding,
fewer samples than features) and keeps the factors from fitting directions the calibration batch barely saw.

The layers are those of :mod:`core.decompose.svd` (Linear pair, or ``k x k`` conv + 1x1); the
factorization (covariance, Cholesky, SVD) is computed once per (weight, calibration batch) and
sliced per rank.

References
----------
Wang, Zheng, Zhang, Zhang. "SVD-LLM: Truncation-aware Singular Value Decomposition for Large
Language Model Compression." ICLR 2025.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from core.decompose._specs import conv_patches
from core.decompose.registry import register_method
from core.decompose.svd import SVD, MatrixSVD, truncated_svd, weight_matrix
from core.options import keyword_defaults


@dataclass(frozen=True)
class WhitenedSVD(MatrixSVD):
    """SVD of the whitened weight ``W L``; ``factors`` un-whitens the first factor with ``L^{-1}``."""

    L: torch.Tensor = None  # (D, D) lower-triangular, X^T X + lam I = L L^T

    def factors(self, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(first (1, r, D), second (1, O, r))`` as :meth:`MatrixSVD.factors`, un-whitened, each component balanced.

        Un-whitening divides the first factor by ``L``, whose scale is the square root of the calibration's
        second moment times its row count: the first factor came out ~100x smaller than the second on SRMD,
        and a fine-tune's Adam steps (of the same size for every weight) then wiped it out (31.3 -> 14.0 dB in
        20 steps at lr 1e-4). Component ``i`` is rescaled so that row ``i`` of the first factor and column ``i``
        of the second have the same norm; the product is unchanged.
        """
        first, second = super().factors(rank)  # first (1, r, D)
        first = torch.linalg.solve_triangular(self.L, first, upper=False, left=False)
        scale = (second.norm(dim=1) / first.norm(dim=2).clamp_min(1e-300)).sqrt()  # (1, r)
        return first * scale.unsqueeze(-1), second / scale.unsqueeze(1)


def input_gram(module: nn.Module, calibration: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """``X^T X`` (D, D) in float64 of the vectors the layer's weight multiplies (rows of a Linear's input, conv patches)."""
    weight = module.weight
    calibration = calibration.to(device=weight.device, dtype=weight.dtype)
    D = weight_matrix(module).shape[-1]
    gram = torch.zeros(D, D, dtype=torch.float64, device=weight.device)
    for batch in calibration.split(chunk):
        if isinstance(module, nn.Linear):
            X = batch.reshape(-1, D)  # (rows, D)
        else:
            X = conv_patches(module, batch).transpose(1, 2).reshape(-1, D)  # (N*L, C*kh*kw)
        X = X.to(torch.float64)
        gram += X.T @ X
    return gram


def whitened_svd(module: nn.Module, calibration: torch.Tensor, damping: float = 0.01) -> WhitenedSVD:
    """The activation-aware factorization of ``module`` for inputs ``calibration``."""
    gram = input_gram(module, calibration)
    mean_diag = gram.diagonal().mean().item()
    lam = damping * mean_diag if mean_diag > 0 else 1.0
    L = torch.linalg.cholesky(gram + lam * torch.eye(len(gram), dtype=gram.dtype, device=gram.device))
    W = weight_matrix(module).to(torch.float64)  # (1, O, D)
    svd = truncated_svd(W @ L)
    return WhitenedSVD(svd.U, svd.S, svd.Vh, L)


@register_method
class ActivationAwareSVD(SVD):
    name = "aa_svd"
    needs_calibration = True
    layer_types = (nn.Linear, nn.Conv2d)
    options = keyword_defaults(whitened_svd)

    def supports_groups(self, module: nn.Module) -> bool:
        return False

    def factorize(self, module: nn.Module, calibration: torch.Tensor, damping: float = 0.01) -> WhitenedSVD:
        return whitened_svd(module, calibration, damping)

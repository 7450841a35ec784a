"""Truncated SVD of a layer's weight matrix into two thinner layers.

- ``Linear(in, out)`` -> ``Linear(in, r)``, ``Linear(r, out)``.
- ``Conv2d`` (channel SVD) -> ``k x k`` conv to ``r`` channels (stride, padding, dilation of the original),
  then a 1x1 conv with the bias. A grouped conv is factored group by group: a grouped pair with
  ``r`` channels per group. A depthwise conv with one output per group has rank 1 per group and is refused.
- ``ConvTranspose2d`` -> a transposed conv to ``r`` channels (all of the original geometry), then a 1x1 conv.

The full SVD is computed once per weight; a rank is a slice of it (``MatrixSVD.factors``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from core.decompose._base import BaseMethod
from core.decompose._specs import LayerSpec
from core.decompose.registry import register_method


@dataclass(frozen=True)
class MatrixSVD:
    """SVD of a batch of matrices ``M[g] = U[g] diag(S[g]) Vh[g]`` (float64, singular values descending)."""

    U: torch.Tensor  # (g, m, k)
    S: torch.Tensor  # (g, k)
    Vh: torch.Tensor  # (g, k, n)

    @property
    def shape(self) -> tuple[int, int]:
        return self.U.shape[1], self.Vh.shape[2]

    def factors(self, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(first (g, r, n), second (g, m, r))`` with ``second @ first`` the best rank-``r`` approximation.

        The singular values are split evenly (square roots) so both factors have the same scale.
        """
        root = self.S[:, :rank].sqrt()
        return root.unsqueeze(-1) * self.Vh[:, :rank], self.U[:, :, :rank] * root.unsqueeze(1)


def truncated_svd(matrix: torch.Tensor) -> MatrixSVD:
    """Thin SVD of ``matrix`` (m, n) or a batch (g, m, n), in float64."""
    batch = matrix if matrix.dim() == 3 else matrix.unsqueeze(0)
    U, S, Vh = torch.linalg.svd(batch.detach().to(torch.float64), full_matrices=False)
    return MatrixSVD(U, S, Vh)


def weight_matrix(module: nn.Module) -> torch.Tensor:
    """The weight as a batch of per-group matrices (g, out, in*kh*kw) whose SVD the channel split uses."""
    W = module.weight.detach()
    if isinstance(module, nn.Linear):
        return W.unsqueeze(0)
    g = module.groups
    if isinstance(module, nn.ConvTranspose2d):  # W (Cin, Cout/g, kh, kw)
        Cin, Cout_g, kh, kw = W.shape
        return W.reshape(g, Cin // g, Cout_g, kh * kw).permute(0, 2, 1, 3).reshape(g, Cout_g, -1)
    return W.reshape(g, W.shape[0] // g, -1)  # W (O, C/g, kh, kw)


def first_weight(module: nn.Module, first: torch.Tensor) -> torch.Tensor:
    """The weight of the first (geometry-carrying) layer from ``first`` (g, r, in*kh*kw)."""
    if isinstance(module, nn.ConvTranspose2d):  # -> (Cin, r, kh, kw)
        g, r = first.shape[:2]
        kh, kw = module.kernel_size
        return first.reshape(g, r, -1, kh, kw).transpose(1, 2).reshape(-1, r, kh, kw)
    return first  # build_plan reshapes (g, r, C/g*kh*kw) to (g*r, C/g, kh, kw) or (r, in)


@register_method
class SVD(BaseMethod):
    name = "svd"
    layer_types = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)

    def supports_groups(self, module: nn.Module) -> bool:
        return True

    def reason(self, module: nn.Module) -> str | None:
        reason = super().reason(module)
        if reason is None and self.max_rank(module) == 1:
            hint = "; spatial_svd can still split its kernel" if self.name == "svd" and isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) else ""
            return f"its weight has rank at most 1 (per group), so there is nothing to truncate{hint}"
        return reason

    @staticmethod
    def matrix(module: nn.Module) -> torch.Tensor:
        """The per-group matrices (g, m, n) this method truncates."""
        return weight_matrix(module)

    def max_rank(self, module: nn.Module) -> int:
        return min(self.matrix(module).shape[1:])

    def plan(self, module: nn.Module, rank: int) -> list[LayerSpec]:
        dense = LayerSpec.of(module)
        g = dense.groups
        first = replace(dense, out_ch=g * rank, bias=False)  # all of the original geometry
        return [first, dense.pointwise(g * rank, dense.out_ch, groups=g, bias=dense.bias)]

    def factorize(self, module: nn.Module, calibration=None) -> MatrixSVD:
        return truncated_svd(self.matrix(module))

    def layer_weights(self, module: nn.Module, rank: int, factors) -> list[torch.Tensor]:
        first, second = factors
        return [first_weight(module, first), second]

    def spectra(self, module: nn.Module, calibration=None) -> list[MatrixSVD]:
        """The SVDs whose singular values rank selection reads, one per entry of the rank."""
        return [self.factorization(module, calibration)]

"""Tucker-2 (Kim et al., 2016): a conv as 1x1 to ``r_in`` channels, a ``k x k`` core conv to ``r_out``, 1x1 out.

The kernel ``W (O, C, kh, kw)`` is approximated by HOSVD on its two channel modes:
``W ~ G x_0 U_out x_1 U_in`` with ``U_out``, ``U_in`` the leading left singular vectors of the
mode-0 and mode-1 unfoldings and ``G = W x_0 U_out^T x_1 U_in^T``. The core conv carries stride,
padding (and its mode) and dilation; the last 1x1 carries the bias. Ranks are ``(r_in, r_out)``.

A ``ConvTranspose2d`` (ungrouped) factors the same way: it is linear in its input channels at every
position, so with its kernel ``W (C, O, kh, kw)`` ~ ``G x_0 U_in x_1 U_out`` it is a 1x1 conv to ``r_in``
channels at the input's resolution, a transposed core conv ``G (r_in, r_out, kh, kw)`` with all the
original geometry (stride, padding, output padding, dilation), and a 1x1 conv out at the output's
resolution: exact at full rank, as for a conv.

HOSVD truncations are nested: the singular vectors are computed once, a rank pair slices them and
projects ``W`` onto them (a cheap contraction, not a new decomposition). Because the projections are
nested, the kernel's error ``||W - W'||`` never grows with either rank, nor does the output error on
white inputs; on correlated inputs (real activations) the output error can rise slightly from one rank
to the next, since the two channel projections interact through the input covariance
(``aa_svd`` is the data-aware alternative).

References
----------
Kim, Park, Yoo, Choi, Yang, Shin. "Compression of Deep Convolutional Neural Networks for Fast and
Low Power Mobile Applications." ICLR 2016.
De Lathauwer, De Moor, Vandewalle. "A Multilinear Singular Value Decomposition." SIMAX 2000.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from core.decompose._base import BaseMethod
from core.decompose._specs import LayerSpec
from core.decompose.registry import register_method
from core.decompose.svd import MatrixSVD, truncated_svd


def unfold(tensor: torch.Tensor, mode: int) -> torch.Tensor:
    """Mode-``mode`` unfolding: (dim_mode, product of the other dims), other modes in order."""
    return tensor.movedim(mode, 0).reshape(tensor.shape[mode], -1)


def mode_product(tensor: torch.Tensor, matrix: torch.Tensor, mode: int) -> torch.Tensor:
    """``tensor x_mode matrix``: contracts ``tensor``'s mode with ``matrix``'s columns (matrix (new, dim_mode))."""
    return torch.tensordot(matrix, tensor, dims=([1], [mode])).movedim(0, mode)


@dataclass(frozen=True)
class HOSVD:
    """Singular vectors of a tensor's unfoldings along ``modes``; ``factors(ranks)`` truncates (ranks in ``modes`` order)."""

    tensor: torch.Tensor  # float64
    modes: tuple[int, ...]
    svds: tuple[MatrixSVD, ...]

    @property
    def max_ranks(self) -> tuple[int, ...]:
        return tuple(s.S.shape[1] for s in self.svds)

    def factors(self, ranks) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(core, [U_mode (dim, r) for each mode])`` with ``core = tensor x_n U_n^T`` over the modes."""
        Us = [s.U[0, :, :r] for s, r in zip(self.svds, ranks)]
        core = self.tensor
        for mode, U in zip(self.modes, Us):
            core = mode_product(core, U.T, mode)
        return core, Us


def hosvd(tensor: torch.Tensor, modes: tuple[int, ...]) -> HOSVD:
    """Truncated HOSVD of ``tensor`` on ``modes`` (computed in float64)."""
    tensor = tensor.detach().to(torch.float64)
    return HOSVD(tensor, tuple(modes), tuple(truncated_svd(unfold(tensor, m)) for m in modes))


def channel_modes(module: nn.Module) -> tuple[int, int]:
    """The weight's (input channel, output channel) axes: ``(1, 0)`` for a conv, ``(0, 1)`` for a transposed conv."""
    return (0, 1) if isinstance(module, nn.ConvTranspose2d) else (1, 0)


def tucker2_plan(module: nn.Conv2d | nn.ConvTranspose2d, ranks: tuple[int, int]) -> list[LayerSpec]:
    dense = LayerSpec.of(module)
    r_in, r_out = ranks
    core = replace(dense, in_ch=r_in, out_ch=r_out, bias=False)
    return [dense.pointwise(dense.in_ch, r_in), core, dense.pointwise(r_out, dense.out_ch, bias=dense.bias)]


def tucker2_weights(factors) -> list[torch.Tensor]:
    core, (U_in, U_out) = factors  # core (r_out, r_in, kh, kw), transposed conv (r_in, r_out, kh, kw); U_in (C, r_in), U_out (O, r_out)
    return [U_in.T, core, U_out]


@register_method
class Tucker2(BaseMethod):
    name = "tucker2"
    rank_arity = 2
    layer_types = (nn.Conv2d, nn.ConvTranspose2d)

    def reason(self, module: nn.Module) -> str | None:
        if isinstance(module, nn.ConvTranspose2d) and module.groups > 1:
            return f"{self.name} needs an ungrouped transposed conv (groups={module.groups}); svd factors each group"
        return super().reason(module)

    def max_rank(self, module: nn.Conv2d | nn.ConvTranspose2d) -> tuple[int, int]:
        into, out = channel_modes(module)
        C, O = module.weight.shape[into], module.weight.shape[out]
        taps = module.weight.shape[2] * module.weight.shape[3]
        return min(C, O * taps), min(O, C * taps)

    def plan(self, module: nn.Conv2d, rank: tuple[int, int]) -> list[LayerSpec]:
        return tucker2_plan(module, rank)

    def factorize(self, module: nn.Conv2d, calibration=None) -> HOSVD:
        return hosvd(module.weight, modes=channel_modes(module))  # (input channels, output channels), the rank order

    def layer_weights(self, module: nn.Conv2d, rank, factors) -> list[torch.Tensor]:
        return tucker2_weights(factors)

    def spectra(self, module: nn.Conv2d, calibration=None) -> list[MatrixSVD]:
        return list(self.factorization(module).svds)

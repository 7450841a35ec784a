"""Tucker and CP of a capsule layer's transformation tensor ``W[in_caps, out_caps, out_dim, in_dim]``.

The replacements subclass :class:`~core.models.capsnet.CapsuleRouting` and keep its ``route``
(dynamic routing) untouched; only ``predictions`` changes, computing
``u_hat[b, i, j, d] = sum_k W[i, j, d, k] u[b, i, k]`` from the factors without forming ``W``.
Mode names: ``i`` input capsule, ``j`` output capsule, ``d`` output dimension, ``k`` input dimension.

- ``capsule_tucker``: ``W = G x_i U_i x_j U_j x_d U_d x_k U_k`` by HOSVD, ranks ``(r_i, r_j, r_d, r_k)``
  (nested, cached once per weight). Its forward contracts ``U_i`` into the core once per call
  (``I r_i r_j r_d r_k`` multiply-adds, whatever the batch size), then works per sample.
- ``capsule_cp``: ``W = sum_r U_i[:, r] (x) U_j[:, r] (x) U_d[:, r] (x) U_k[:, r]`` by ALS (see
  :mod:`core.decompose.cp`), cached per rank; exact at ``max_rank = prod(shape) / max(shape)``.

Costs are those ``count_flops`` measures on a batch of one (routing itself is elementwise work that
the FLOP counter does not count, the same before and after).
"""
from __future__ import annotations

import torch
from torch import nn

from core.decompose._base import BaseMethod
from core.decompose.cp import cp_factors, cp_max_rank
from core.decompose.registry import Cost, register_method
from core.decompose.svd import MatrixSVD
from core.decompose.tucker2 import HOSVD, hosvd
from core.models.capsnet import CapsuleRouting
from core.options import keyword_defaults


class TuckerCapsuleRouting(CapsuleRouting):
    """Capsule routing whose predictions run a Tucker-factored transformation tensor."""

    def __init__(self, core: torch.Tensor, U_i: torch.Tensor, U_j: torch.Tensor, U_d: torch.Tensor, U_k: torch.Tensor, iters: int = 3) -> None:
        nn.Module.__init__(self)  # not CapsuleRouting.__init__: it would allocate the dense W
        self.iters = iters
        self.core = nn.Parameter(core)  # (r_i, r_j, r_d, r_k)
        self.U_i, self.U_j, self.U_d, self.U_k = (nn.Parameter(U) for U in (U_i, U_j, U_d, U_k))

    def predictions(self, u: torch.Tensor) -> torch.Tensor:
        B, I, _ = u.shape
        r_i, r_j, r_d, r_k = self.core.shape
        core_i = (self.U_i @ self.core.reshape(r_i, -1)).reshape(I, r_j * r_d, r_k)  # (I, r_j r_d, r_k), batch-independent
        t = u @ self.U_k  # (B, I, r_k)
        t = core_i @ t.permute(1, 2, 0)  # (I, r_j r_d, B)
        t = t.reshape(I, r_j, r_d, B).permute(3, 0, 2, 1)  # (B, I, r_d, r_j)
        t = t @ self.U_j.T  # (B, I, r_d, J)
        return t.transpose(2, 3) @ self.U_d.T  # (B, I, J, D)


class CPCapsuleRouting(CapsuleRouting):
    """Capsule routing whose predictions run a CP-factored transformation tensor."""

    def __init__(self, U_i: torch.Tensor, U_j: torch.Tensor, U_d: torch.Tensor, U_k: torch.Tensor, iters: int = 3) -> None:
        nn.Module.__init__(self)  # not CapsuleRouting.__init__: it would allocate the dense W
        self.iters = iters
        self.U_i, self.U_j, self.U_d, self.U_k = (nn.Parameter(U) for U in (U_i, U_j, U_d, U_k))

    def predictions(self, u: torch.Tensor) -> torch.Tensor:
        B, I, _ = u.shape
        J, D = self.U_j.shape[0], self.U_d.shape[0]
        t = (u @ self.U_k) * self.U_i  # (B, I, R)
        jd = (self.U_j.unsqueeze(1) * self.U_d.unsqueeze(0)).reshape(J * D, -1)  # (J*D, R) Khatri-Rao product
        return (t @ jd.T).reshape(B, I, J, D)


class _CapsuleMethod(BaseMethod):
    layer_types = (CapsuleRouting,)

    @staticmethod
    def weight(module: CapsuleRouting) -> torch.Tensor:
        return module.W

    def reason(self, module: nn.Module) -> str | None:
        reason = super().reason(module)
        if reason is None and not isinstance(getattr(module, "W", None), torch.Tensor):
            return f"{type(module).__name__} is already factorized (it has no dense W)"
        return reason

    def build(self, module: CapsuleRouting, rank, *, calibration=None, **options) -> nn.Module:
        rank = self.validate_rank(module, rank)
        with torch.no_grad():
            factors = self.factorization(module, **options).factors(rank)
            return self.make(factors, module.iters).to(device=module.W.device, dtype=module.W.dtype)


@register_method
class CapsuleTucker(_CapsuleMethod):
    name = "capsule_tucker"
    rank_arity = 4

    def max_rank(self, module: CapsuleRouting) -> tuple[int, int, int, int]:
        shape = module.W.shape
        total = shape.numel()
        return tuple(min(n, total // n) for n in shape)

    def factorize(self, module: CapsuleRouting, calibration=None) -> HOSVD:
        return hosvd(module.W, modes=(0, 1, 2, 3))

    @staticmethod
    def make(factors, iters: int) -> TuckerCapsuleRouting:
        core, Us = factors
        return TuckerCapsuleRouting(core.clone(), *(U.clone() for U in Us), iters=iters)

    def cost(self, module: CapsuleRouting, rank, input_hw=None) -> Cost:
        r_i, r_j, r_d, r_k = self.validate_rank(module, rank)
        I, J, D, K = module.W.shape
        params = r_i * r_j * r_d * r_k + I * r_i + J * r_j + D * r_d + K * r_k
        macs = I * r_i * r_j * r_d * r_k + I * K * r_k + I * r_j * r_d * r_k + I * r_d * r_j * J + I * J * r_d * D
        return Cost(params, 2 * macs)

    def spectra(self, module: CapsuleRouting, calibration=None) -> list[MatrixSVD]:
        return list(self.factorization(module).svds)


@register_method
class CapsuleCP(_CapsuleMethod):
    name = "capsule_cp"
    nested = False
    options = keyword_defaults(cp_factors)

    def max_rank(self, module: CapsuleRouting) -> int:
        return cp_max_rank(tuple(module.W.shape))

    def factors_at(self, module: CapsuleRouting, rank: int, **options) -> list[torch.Tensor]:
        return cp_factors(module.W, rank, **options)

    @staticmethod
    def make(factors, iters: int) -> CPCapsuleRouting:
        return CPCapsuleRouting(*(U.clone() for U in factors), iters=iters)

    def cost(self, module: CapsuleRouting, rank, input_hw=None) -> Cost:
        R = self.validate_rank(module, rank)
        I, J, D, K = module.W.shape
        return Cost(R * (I + J + D + K), 2 * (I * K * R + I * R * J * D))

"""``lowrank-qkv``: softmax attention whose ``qkv`` and ``proj`` linears are truncated to rank ``r``.

The attention itself is exact (SDPA, as :mod:`core.attention.softmax`); only the projections are
compressed, each by a method of :mod:`core.decompose` (``svd``, or the data-aware ``aa_svd`` with
calibration tokens). ``Linear(C, 3A)`` becomes ``Linear(C, r) -> Linear(r, 3A)`` and
``Linear(A, C)`` becomes ``Linear(A, r) -> Linear(r, C)``.
"""
from __future__ import annotations

import torch
from torch import nn

from core.attention._base import TimmParts, check_option
from core.attention.registry import register_variant
from core.attention.softmax import SoftmaxAttention
from core.decompose.registry import get_method

METHODS = ("svd", "aa_svd")


def factored_linear(linear: nn.Module, rank: int, method: str, calibration: torch.Tensor | None = None) -> nn.Module:
    """``linear`` as ``Linear(in, rank) -> Linear(rank, out)`` by ``method`` of :data:`METHODS` (``svd`` without calibration).

    Parameters
    ----------
    linear : the dense ``nn.Linear`` (left untouched).
    rank : from 1 to ``min(in, out)``.
    method : ``"svd"``, or ``"aa_svd"`` whitened by ``calibration``, a batch of the inputs ``linear`` receives.
    """
    return get_method(method if calibration is not None else "svd").build(linear, rank, calibration=calibration)


@register_variant
class LowRankQKVAttention(SoftmaxAttention):
    """Softmax attention with rank-``rank`` factored ``qkv`` and ``proj``.

    Parameters
    ----------
    dim, num_heads, head_dim : as :class:`~core.attention._qkv.QKVAttention`.
    rank : rank of both factored projections, from 1 to ``min(dim, num_heads * head_dim)``.
    method : ``"svd"`` or ``"aa_svd"`` (needs calibration tokens, so only through ``from_timm``).

    A module built directly factors its own randomly initialised dense projections with ``svd``.
    """

    variant = "lowrank-qkv"

    def __init__(self, dim: int, num_heads: int, head_dim: int, *, rank: int = 32, method: str = "svd") -> None:
        super().__init__(dim, num_heads, head_dim)
        check_option(self.variant, "method", method, method in METHODS, f"one of {', '.join(METHODS)}")
        self.rank, self.method = rank, method
        with torch.no_grad():
            self.qkv, self.proj = self.factored(self.qkv, None), self.factored(self.proj, None)

    def factored(self, linear: nn.Module, calibration: torch.Tensor | None) -> nn.Module:
        """``linear`` factored at ``self.rank`` by ``self.method`` (``svd`` when there is no calibration)."""
        return factored_linear(linear, self.rank, self.method, calibration)

    def load_timm(self, parts: TimmParts, calibration: torch.Tensor | None) -> None:
        super().load_timm(parts, None)
        if self.method != "aa_svd":
            calibration = None  # plain svd is data-free
        elif calibration is None:
            check_option(self.variant, "calibration", None, False, "input tokens (B, N, C) for method aa_svd")
        # proj's calibration is what it receives in the dense module: exact attention of the dense qkv.
        proj_inputs = None if calibration is None else self.eval().mixed(calibration.to(self.qkv.weight))
        self.qkv = self.factored(self.qkv, calibration)
        self.proj = self.factored(self.proj, proj_inputs)

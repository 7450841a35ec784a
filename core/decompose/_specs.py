"""Layer plans: the shapes of the small layers a decomposition puts in place of one dense layer.

A method describes its replacement as a list of :class:`LayerSpec` (kind, channels, geometry). The same
list gives the cost (parameters and FLOPs, without building anything) and, filled with factor
weights, the built :class:`Decomposed` module — so predicted and measured costs cannot drift apart.

FLOPs follow ``torch.utils.flop_counter``: 2 per multiply-add of a conv or matmul; bias adds and
elementwise activations count 0.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Union

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import RankscopeError

Pair = tuple[int, int]
Padding = Union[Pair, str]  # numbers, or "same" / "valid" as nn.Conv2d accepts


@dataclass(frozen=True)
class LayerSpec:
    """One layer of a plan: ``kind`` is ``"linear"``, ``"conv"``, ``"conv_transpose"`` or ``"prelu"``."""

    kind: str
    in_ch: int
    out_ch: int
    kernel: Pair = (1, 1)
    stride: Pair = (1, 1)
    padding: Padding = (0, 0)
    dilation: Pair = (1, 1)
    groups: int = 1
    bias: bool = False
    padding_mode: str = "zeros"
    output_padding: Pair = (0, 0)

    @classmethod
    def of(cls, module: nn.Module) -> "LayerSpec":
        """The spec of a dense ``nn.Linear``, ``nn.Conv2d`` or ``nn.ConvTranspose2d``."""
        if isinstance(module, nn.Linear):
            return cls("linear", module.in_features, module.out_features, bias=module.bias is not None)
        kind = "conv_transpose" if isinstance(module, nn.ConvTranspose2d) else "conv"
        return cls(
            kind,
            module.in_channels,
            module.out_channels,
            kernel=tuple(module.kernel_size),
            stride=tuple(module.stride),
            padding=module.padding if isinstance(module.padding, str) else tuple(module.padding),
            dilation=tuple(module.dilation),
            groups=module.groups,
            bias=module.bias is not None,
            padding_mode=module.padding_mode,
            output_padding=tuple(module.output_padding) if kind == "conv_transpose" else (0, 0),
        )

    def pointwise(self, in_ch: int, out_ch: int, *, groups: int = 1, bias: bool = False) -> "LayerSpec":
        """A 1x1 conv (or a Linear, for a Linear plan) with no geometry of its own."""
        kind = "linear" if self.kind == "linear" else "conv"
        return LayerSpec(kind, in_ch, out_ch, groups=groups, bias=bias)

    def axis(self, axis: int, in_ch: int, out_ch: int, *, groups: int = 1, bias: bool = False) -> "LayerSpec":
        """The ``kh x 1`` (axis 0) or ``1 x kw`` (axis 1) conv carrying this conv's geometry along one axis.

        A transposed conv's spec gives a transposed conv (its output padding split by axis too).
        """
        keep = lambda pair, other: tuple(v if i == axis else other for i, v in enumerate(pair))  # noqa: E731
        padding = self.padding if isinstance(self.padding, str) else keep(self.padding, 0)
        return replace(
            self,
            kind="conv_transpose" if self.kind == "conv_transpose" else "conv",
            in_ch=in_ch,
            out_ch=out_ch,
            kernel=keep(self.kernel, 1),
            stride=keep(self.stride, 1),
            padding=padding,
            dilation=keep(self.dilation, 1),
            groups=groups,
            bias=bias,
            output_padding=keep(self.output_padding, 0),
        )

    def params(self) -> int:
        if self.kind == "prelu":
            return self.out_ch
        weight = self.in_ch * self.out_ch // self.groups * self.kernel[0] * self.kernel[1]
        return weight + (self.out_ch if self.bias else 0)

    def out_hw(self, hw: Pair) -> Pair:
        """Spatial size of the output for an input of spatial size ``hw``."""
        if self.kind in ("linear", "prelu"):
            return hw
        if self.kind == "conv_transpose":
            return tuple(
                (n - 1) * s - 2 * p + d * (k - 1) + op + 1
                for n, s, p, d, k, op in zip(hw, self.stride, self.padding, self.dilation, self.kernel, self.output_padding)
            )
        if self.padding == "same":
            return hw
        padding = (0, 0) if self.padding == "valid" else self.padding
        return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, p, d, k, s in zip(hw, padding, self.dilation, self.kernel, self.stride))

    def flops(self, hw: Pair) -> int:
        """FLOPs of one sample whose input has spatial size ``hw`` (ignored for a Linear)."""
        if self.kind == "prelu":
            return 0
        macs = self.in_ch * self.out_ch // self.groups * self.kernel[0] * self.kernel[1]
        if self.kind == "linear":
            return 2 * macs
        grid = hw if self.kind == "conv_transpose" else self.out_hw(hw)
        return 2 * macs * grid[0] * grid[1]

    def make(self) -> nn.Module:
        """An initialised module of this shape (its weights are overwritten by the builder)."""
        if self.kind == "linear":
            return nn.Linear(self.in_ch, self.out_ch, bias=self.bias)
        if self.kind == "prelu":
            return nn.PReLU(self.out_ch, init=1.0)
        common = dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups, bias=self.bias)
        if self.kind == "conv_transpose":
            return nn.ConvTranspose2d(self.in_ch, self.out_ch, self.kernel, output_padding=self.output_padding, **common)
        return nn.Conv2d(self.in_ch, self.out_ch, self.kernel, padding_mode=self.padding_mode, **common)


def plan_cost(plan: list[LayerSpec], input_hw: Pair | None) -> tuple[int, int]:
    """``(params, flops)`` of running the plan's layers in order on one sample of spatial size ``input_hw``."""
    if input_hw is None and any(spec.kind in ("conv", "conv_transpose") for spec in plan):
        raise RankscopeError("the FLOPs of a convolution depend on its input size: pass input_hw=(H, W)")
    params = flops = 0
    hw = input_hw
    for spec in plan:
        params += spec.params()
        flops += spec.flops(hw)
        hw = spec.out_hw(hw)
    return params, flops


class Decomposed(nn.Sequential):
    """The layers that replace one dense layer; ``forward`` runs them in order (the factors, never a dense weight).

    ``method`` and ``rank`` record what produced it.
    """

    def __init__(self, *layers: nn.Module, method: str, rank) -> None:
        super().__init__(*layers)
        self.method = method
        self.rank = rank

    def extra_repr(self) -> str:
        return f"method={self.method!r}, rank={self.rank}"


def build_plan(plan: list[LayerSpec], weights: list[torch.Tensor | None], bias: torch.Tensor | None, like: torch.Tensor, *, method: str, rank) -> Decomposed:
    """Instantiate ``plan`` with the given weights (``None`` keeps the module's own, e.g. a PReLU's slope).

    ``bias`` goes to the last layer; everything is cast to the dtype and device of ``like``.
    """
    layers = []
    for spec, weight in zip(plan, weights):
        layer = spec.make().to(device=like.device, dtype=like.dtype)
        if weight is not None:
            layer.weight.copy_(weight.reshape(layer.weight.shape))
        layers.append(layer)
    if bias is not None:
        layers[-1].bias.copy_(bias)
    return Decomposed(*layers, method=method, rank=rank)


def conv_patches(module: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """The input patches a conv multiplies its weight with: (N, C*kh*kw, L), padding mode included."""
    kh, kw = module.kernel_size
    if module.padding == "same":
        pads = []
        for d, k in zip(reversed(module.dilation), (kw, kh)):  # F.pad takes the last axis first
            total = d * (k - 1)
            pads += [total // 2, total - total // 2]
    else:
        ph, pw = (0, 0) if module.padding == "valid" else module.padding
        pads = [pw, pw, ph, ph]
    mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
    x = F.pad(x, pads, mode=mode)
    return F.unfold(x, (kh, kw), dilation=module.dilation, stride=module.stride)

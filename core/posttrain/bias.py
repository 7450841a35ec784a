"""Bias correction: a compressed layer's mean output shift on calibration data folded into its bias.

For networks without BatchNorm to absorb it (SRMD, transformers), the shift a truncation causes in a layer's mean
output passes unchanged into every later layer; adding ``mean(dense output) - mean(compressed output)`` per output
channel to the compressed layer's last bias removes it on the calibration data (Nagel et al.'s bias correction,
with the empirical means of the compressed prefix's outputs rather than the analytic ones).

Reference: Nagel, van Baalen, Blankevoort, Welling. "Data-Free Quantization Through Weight Equalization and Bias
Correction." ICCV 2019.
"""
from __future__ import annotations

import torch
from torch import nn

LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)


def channel_sum(output: torch.Tensor, channels_last: bool) -> tuple[torch.Tensor, int]:
    """Per output channel, the sum of ``output`` over everything else (float64), and how many values each sums."""
    dim = output.dim() - 1 if channels_last or output.dim() < 3 else 1
    flat = output.detach().to(torch.float64).transpose(0, dim).reshape(output.shape[dim], -1)
    return flat.sum(1), flat.shape[1]


def last_layer(module: nn.Module) -> nn.Module | None:
    """The last Linear or conv of ``module`` (``module`` itself if it is one), whose bias a shift goes to."""
    layers = [m for m in module.modules() if isinstance(m, LAYERS)]
    return layers[-1] if layers else None


def correct_bias(built: nn.Module, shift: torch.Tensor) -> bool:
    """Add ``shift`` (per output channel) to the bias of ``built``'s last layer, creating the bias if it has none;
    ``False`` (nothing changed) when ``built`` has no such layer or its output channels are not ``shift``'s."""
    last = last_layer(built)
    if last is None:
        return False
    transposed = isinstance(last, nn.ConvTranspose2d)
    channels = last.weight.shape[1] * last.groups if transposed else last.weight.shape[0]
    if channels != len(shift):
        return False
    with torch.no_grad():
        if last.bias is None:
            last.bias = nn.Parameter(torch.zeros(channels, dtype=last.weight.dtype, device=last.weight.device))
        last.bias += shift.to(last.bias.dtype)
    return True

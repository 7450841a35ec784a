"""BatchNorm statistics after compression, from unlabelled calibration inputs.

A compressed layer changes the distribution its BatchNorm normalises; the running moments the network was trained
with no longer fit. Two ways to refit them without labels or training:

``reestimate``
    torch's own estimate: every BatchNorm's running moments reset and re-accumulated, cumulatively (``momentum =
    None``), over the calibration batches in training mode (EagleEye's adaptive BN; NNCF's BN adaptation). Good
    when the calibration inputs are as broad as the training data; a narrow set replaces good statistics with
    worse ones (measured in the bench).
``shift``
    relative to the dense model on the same inputs: each BatchNorm, in forward order, gets its running mean and
    variance moved by the compressed-minus-dense difference of its input's moments (``running + (m̂ - m)``), the
    difference measured with the BatchNorms before it already corrected. The dense model's statistics stay the
    anchor, only the change that compression made is applied, so a narrow calibration set does less harm.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from core.posttrain.bias import channel_sum


MODES = ("shift", "reestimate", "none")
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def batchnorm_paths(model: nn.Module) -> list[str]:
    """Paths of ``model``'s BatchNorms that keep running statistics."""
    return [name for name, m in model.named_modules() if isinstance(m, BATCHNORMS) and m.track_running_stats]


def reestimate(model: nn.Module, batches: Sequence[torch.Tensor]) -> int:
    """Refit every BatchNorm's running moments of ``model`` (in place) on ``batches``, as torch's cumulative
    average of the batch moments in training mode; the other modules stay in eval mode. Returns the BatchNorms
    refitted."""
    norms = [model.get_submodule(p) for p in batchnorm_paths(model)]
    momenta = [bn.momentum for bn in norms]
    model.eval()
    try:
        for bn in norms:
            bn.reset_running_stats()
            bn.momentum = None
            bn.train()
        with torch.no_grad():
            for x in batches:
                model(x)
    finally:
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum
        model.eval()
    return len(norms)


def channel_moments(x: torch.Tensor) -> torch.Tensor:
    """Per channel (dim 1) of ``x``: ``(sum, sum of squares, count)`` in float64, stacked as ``(3, C)``."""
    x = x.detach().to(torch.float64)
    total, count = channel_sum(x, channels_last=False)
    squares, _ = channel_sum(x ** 2, channels_last=False)
    return torch.stack([total, squares, torch.full_like(total, float(count))])


def shift_batchnorm(bn: nn.Module, dense: torch.Tensor, compressed: torch.Tensor) -> None:
    """Move ``bn``'s running moments (in place) by ``compressed`` minus ``dense``, each the :func:`channel_moments`
    of its input summed over the calibration batches; the variance is kept above a hundredth of its old value."""
    (s, q, n), (sh, qh, nh) = dense, compressed
    mean, mean_hat = s / n, sh / nh
    var, var_hat = q / n - mean ** 2, qh / nh - mean_hat ** 2
    with torch.no_grad():
        bn.running_mean += (mean_hat - mean).to(bn.running_mean.dtype)
        old = bn.running_var.to(torch.float64)
        bn.running_var.copy_(torch.maximum(old + var_hat - var, 0.01 * old).to(bn.running_var.dtype))

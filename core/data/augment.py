"""Training-time augmentation of image batches: random shifts by a few pixels and horizontal flips for classifiers,
the eight flips and quarter turns of the square for super-resolution pairs."""
from __future__ import annotations

import torch
from torch import nn


def augment_batch(x: torch.Tensor, gen: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random translation by up to ``pad`` pixels (zero fill) and random horizontal flip, per image.

    Parameters
    ----------
    x : images ``(B, C, H, W)``, any dtype (the shipped models' training loop passes uint8).
    gen : the generator every random draw takes from.
    pad : the largest shift, in pixels, along each axis.

    Returns
    -------
    torch.Tensor
        A new batch of the same shape and dtype, with standard (contiguous) strides.
    """
    B, C, H, W = x.shape
    padded = nn.functional.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (B,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (B,), generator=gen)
    rows = (dy[:, None] + torch.arange(H)[None])  # (B, H)
    cols = (dx[:, None] + torch.arange(W)[None])  # (B, W)
    out = padded[torch.arange(B)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    out = out.permute(0, 3, 1, 2)
    flip = torch.rand(B, generator=gen) < 0.5
    out[flip] = out[flip].flip(-1)
    # Standard strides: with one channel, .contiguous() would keep the permuted (channels-last) strides, on which
    # torch's CPU conv backward crashes (double free) for some conv widths, e.g. resampled ones.
    return out.clone(memory_format=torch.contiguous_format)


def augment_normalised(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """:func:`augment_batch` on normalised images: shifted-in borders get each channel's darkest value.

    ``augment_batch`` fills with zeros, which after normalisation is a mid grey; shifting the batch so that
    its per-channel minimum (black, for Fashion-MNIST's backgrounds) is zero keeps the fill black.

    Parameters
    ----------
    images : normalised float images ``(B, C, H, W)``.
    gen : the generator every random draw takes from.

    Returns
    -------
    torch.Tensor
        The augmented batch, normalised as ``images`` was.
    """
    black = images.amin(dim=(0, 2, 3), keepdim=True)  # (1, C, 1, 1)
    return augment_batch(images - black, gen) + black


def augment_pairs(inputs: torch.Tensor, targets: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random symmetry of the square (flips and transpose, one of eight) applied to each input and its target.

    Super-resolution pairs cannot be shifted by a few input pixels without shifting the target by ``scale`` times as
    many, but every symmetry of the square maps an LR/HR pair to an LR/HR pair (the bicubic downscale commutes with
    it), the augmentation of EDSR and its successors.

    Parameters
    ----------
    inputs : images ``(B, C, h, w)``, the low-resolution patches; square when ``targets`` are.
    targets : images ``(B, C', sh, sw)``, the high-resolution patches.
    gen : the generator every random draw takes from.

    Returns
    -------
    tuple of torch.Tensor
        The two augmented batches, contiguous.
    """
    flips = torch.rand(len(inputs), 3, generator=gen) < 0.5  # (B, 3): horizontal, vertical, transpose
    square = inputs.shape[-1] == inputs.shape[-2] and targets.shape[-1] == targets.shape[-2]

    def move(batch: torch.Tensor) -> torch.Tensor:
        out = batch.clone()
        out[flips[:, 0]] = out[flips[:, 0]].flip(-1)
        out[flips[:, 1]] = out[flips[:, 1]].flip(-2)
        if square:
            out[flips[:, 2]] = out[flips[:, 2]].transpose(-1, -2)
        return out.contiguous()

    return move(inputs), move(targets)

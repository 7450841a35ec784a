"""Image-to-image models run on overlapping tiles, so memory stays bounded on large photos.

A super-resolution network's activations are as large as its input times its width (SRMD: 128 channels at the
input's resolution, 47 MB for a 370 x 250 input, 2.2 GB for a 4K one). :func:`tiled_forward` cuts the input into
tiles of at most ``tile`` pixels a side, each widened by a ``margin`` of its real neighbours, runs them one at a
time, and keeps the centre of each output. Where ``margin`` is at least the model's receptive-field radius, the
centres depend only on real pixels, so the stitched output equals the whole-image output (up to float rounding
in the convolutions' summation order): padding, zero or replicated, only ever touches the margins thrown away,
or the image's own border, which the whole-image run pads in the same way.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from core.errors import RankscopeError

Tiling = tuple[int, int]
"""``(tile, margin)``: the largest tile side and the overlap on each side, both in input pixels."""


def _starts(size: int, tile: int) -> list[int]:
    """Offsets of the tiles covering ``[0, size)`` with tiles of at most ``tile`` pixels."""
    return list(range(0, size, tile))


def tiled_forward(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int, margin: int) -> torch.Tensor:
    """``model(x)`` for an image-to-image ``model``, computed tile by tile.

    Parameters
    ----------
    model : maps ``(B, C, H, W)`` to ``(B, C', sH, sW)`` for a whole-number scale ``s`` the same for every size.
    x : the input batch ``(B, C, H, W)``.
    tile : largest tile side, in input pixels; an input no larger than this on both sides is run whole.
    margin : real input pixels added on each side of every tile (clipped at the image border) and dropped from
        its output; at least the model's receptive-field radius for an exact result.

    Returns
    -------
    torch.Tensor
        ``(B, C', sH, sW)``, equal to ``model(x)`` when ``margin`` covers the receptive field.

    Raises
    ------
    RankscopeError
        ``tile`` under 1, ``margin`` under 0, or a model whose output is not a whole-number multiple of its input.
    """
    if tile < 1 or margin < 0:
        raise RankscopeError(f"tiles need a side of at least 1 and a margin of at least 0, got {tile} and {margin}")
    h, w = x.shape[-2:]
    if h <= tile and w <= tile:
        return model(x)
    out: torch.Tensor | None = None
    scale = 0
    for top in _starts(h, tile):
        for left in _starts(w, tile):
            bottom, right = min(top + tile, h), min(left + tile, w)
            t0, l0 = max(top - margin, 0), max(left - margin, 0)
            piece = model(x[..., t0:min(bottom + margin, h), l0:min(right + margin, w)])  # (B, C', s h', s w')
            if out is None:
                scale = piece.shape[-1] // (min(right + margin, w) - l0)
                if piece.shape[-1] != scale * (min(right + margin, w) - l0) or scale < 1:
                    raise RankscopeError(f"tiled evaluation needs a model that scales its input by a whole number; "
                                         f"a {tuple(x.shape[-2:])} tile gave {tuple(piece.shape[-2:])}")
                out = piece.new_empty((*piece.shape[:-2], scale * h, scale * w))
            s = scale
            out[..., s * top:s * bottom, s * left:s * right] = piece[..., s * (top - t0):s * (bottom - t0),
                                                                      s * (left - l0):s * (right - l0)]
    assert out is not None  # the loops ran at least once: h, w >= 1
    return out

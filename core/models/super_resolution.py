"""Super-resolution networks: an RGB image in [0, 1] of any size in, the same image ``scale`` times larger out.

The convolution stacks come from ncnn files (:func:`core.models.ncnn.to_sequential`); what the original
programs do around them (SRMD's degradation planes, waifu2x's border padding) is here, in ``forward``, so the
models take a plain image and every layer stays an ordinary ``Conv2d`` that compression can reach by path
(``body.0``, ``body.2``, ...).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import RankscopeError

# SRMD's bicubic degradation: the 15 PCA coefficients of the bicubic downsampling kernel, the values
# srmd-ncnn-vulkan feeds its noise-free models for bicubic super-resolution (Zhang et al., CVPR 2018).
SRMD_BICUBIC = (-1.12360956e-08, -1.36899159e-08, 1.85637958e-02, 2.86066886e-08, 3.35292965e-02, 8.37272935e-08,
                -2.54424009e-07, -3.16234976e-02, -1.35169253e-02, -1.10466090e-08, 3.84753793e-02, 3.79465739e-08,
                -2.44916752e-01, -8.02213490e-01, -5.40549755e-01)
WAIFU2X_PAD = 7  # UpConv7's six unpadded 3x3 convolutions and the deconvolution need 7 border pixels


def _first_conv(body: nn.Sequential) -> nn.Module:
    first = body[0] if len(body) else None
    if not isinstance(first, nn.Conv2d | nn.ConvTranspose2d):
        raise RankscopeError(f"a super-resolution body must start with a convolution, not {type(first).__name__}")
    return first


class SRMD(nn.Module):
    """SRMD (Zhang, Zuo and Zhang, "Learning a Single Convolutional Super-Resolution Network for Multiple
    Degradations", CVPR 2018): 3x3 convolutions with ReLU on the image stacked with constant degradation planes,
    then a pixel shuffle by the scale.

    Parameters
    ----------
    body : the convolutions and the final ``PixelShuffle``; its first convolution reads 3 + ``len(degradation)``
        channels.
    degradation : the value of each constant plane (the noise-free models: :data:`SRMD_BICUBIC`).
    """

    def __init__(self, body: nn.Sequential, degradation: tuple[float, ...] = SRMD_BICUBIC) -> None:
        super().__init__()
        if _first_conv(body).in_channels != 3 + len(degradation):
            raise RankscopeError(f"SRMD's first convolution reads {_first_conv(body).in_channels} channels, "
                                 f"not 3 + {len(degradation)} degradation planes")
        self.body = body
        self.register_buffer("degradation", torch.tensor(degradation).view(1, -1, 1, 1), persistent=False)  # (1, P, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape  # (B, 3, H, W) RGB in [0, 1]
        planes = self.degradation.to(x.dtype).expand(b, -1, h, w)  # (B, P, H, W)
        return self.body(torch.cat([x, planes], dim=1))  # (B, 3, sH, sW)


class Waifu2xUpConv7(nn.Module):
    """waifu2x's UpConv7 (nagadomi): six unpadded 3x3 convolutions with LeakyReLU(0.1), then a stride-2 transposed
    convolution; the input is padded by :data:`WAIFU2X_PAD` pixels (replicating the border) so the output is
    exactly twice the input.

    Parameters
    ----------
    body : the convolutions and the final ``ConvTranspose2d`` (from the ncnn file).
    """

    def __init__(self, body: nn.Sequential) -> None:
        super().__init__()
        if _first_conv(body).in_channels != 3:
            raise RankscopeError(f"waifu2x's first convolution reads {_first_conv(body).in_channels} channels, not RGB")
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x, (WAIFU2X_PAD,) * 4, mode="replicate")  # (B, 3, H + 14, W + 14)
        return self.body(padded)  # (B, 3, 2H, 2W)

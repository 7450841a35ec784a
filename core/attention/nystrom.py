"""``nystrom``: Nystromformer, softmax attention approximated through ``m`` landmark queries and keys.

With landmarks ``Q~``, ``K~`` the means of ``m`` contiguous segments of the queries and keys::

    softmax(Q K~^T) pinv(softmax(Q~ K~^T)) softmax(Q~ K^T) V

(scores scaled by ``scale``). The ``m x m`` pseudo-inverse is the paper's iteration
``Z <- Z (13 I - A Z (15 I - A Z (7 I - A Z))) / 4`` from ``Z = A^T / (||A||_1 ||A||_inf)``,
``pinv_iters`` times. When ``m >= N`` every token is its own landmark, the product above equals
softmax attention exactly for an exact pseudo-inverse (``A pinv(A) A = A``), and the iteration is
replaced by ``torch.linalg.pinv`` so that exactness does not hinge on the iteration count (six
iterations leave a residual near 1e-2 at ``m = N = 50``). Time and memory ``O(N m d + m^3)`` per head.
The paper's optional depthwise convolution on ``V`` is not included.

References
----------
Xiong, Zeng, Chakraborty, Tan, Fung, Li, Singh. "Nystromformer: A Nystrom-Based Algorithm for
Approximating Self-Attention", AAAI 2021.
"""
from __future__ import annotations

import torch

from core.attention._base import check_option
from core.attention._qkv import QKVAttention, segment_means
from core.attention.registry import register_variant


def iterative_pinv(a: torch.Tensor, iters: int) -> torch.Tensor:
    """Nystromformer's approximate Moore-Penrose inverse of the row-stochastic matrices ``a`` ``(..., m, m)``."""
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    # ||A||_1 (max column sum) and ||A||_inf (max row sum), over the whole batch as in the reference code
    z = a.transpose(-1, -2) / (a.abs().sum(-2).amax() * a.abs().sum(-1).amax())
    for _ in range(iters):
        az = a @ z
        z = 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))
    return z


@register_variant
class NystromAttention(QKVAttention):
    """Nystromformer attention with ``landmarks`` segment-mean landmarks.

    Parameters
    ----------
    dim, num_heads, head_dim : as :class:`~core.attention._qkv.QKVAttention`.
    landmarks : ``m``; at least the sequence length makes the module exact softmax attention.
    pinv_iters : iterations of the pseudo-inverse (the paper uses 6).
    """

    variant = "nystrom"

    def __init__(self, dim: int, num_heads: int, head_dim: int, *, landmarks: int = 16, pinv_iters: int = 6) -> None:
        super().__init__(dim, num_heads, head_dim)
        check_option(self.variant, "landmarks", landmarks, isinstance(landmarks, int) and landmarks >= 1, "an integer of at least 1")
        check_option(self.variant, "pinv_iters", pinv_iters, isinstance(pinv_iters, int) and pinv_iters >= 1, "an integer of at least 1")
        self.landmarks, self.pinv_iters = landmarks, pinv_iters

    def mix(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        m = min(self.landmarks, q.shape[-2])
        q = q * self.scale
        q_land, k_land = segment_means(q, m), segment_means(k, m)  # (B, h, m, d)
        kernel_1 = torch.softmax(q @ k_land.transpose(-1, -2), dim=-1)  # (B, h, N, m)
        kernel_2 = torch.softmax(q_land @ k_land.transpose(-1, -2), dim=-1)  # (B, h, m, m)
        kernel_3 = torch.softmax(q_land @ k.transpose(-1, -2), dim=-1)  # (B, h, m, N)
        inverse = torch.linalg.pinv(kernel_2) if m == q.shape[-2] else iterative_pinv(kernel_2, self.pinv_iters)
        return kernel_1 @ (inverse @ (kernel_3 @ v))

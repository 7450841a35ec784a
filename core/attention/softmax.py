"""``softmax``: exact multi-head attention through ``torch.nn.functional.scaled_dot_product_attention``.

The baseline the other variants are measured against; swapped in for a timm ``Attention`` it
reproduces that module's output. Which SDPA kernel ran is recorded in ``last_backend`` on every
forward pass (see :func:`sdpa_backend`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend

from core.attention._qkv import QKVAttention
from core.attention.registry import register_variant

BACKEND_NAMES = {
    SDPBackend.MATH: "math",
    SDPBackend.FLASH_ATTENTION: "flash",
    SDPBackend.EFFICIENT_ATTENTION: "efficient",
    SDPBackend.CUDNN_ATTENTION: "cudnn",
    SDPBackend.OVERRIDEABLE: "overrideable",
}


def sdpa_backend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0,
                 scale: float | None = None) -> str:
    """The kernel ``scaled_dot_product_attention(q, k, v, dropout_p=..., scale=...)`` dispatches to.

    ``"flash (cpu)"`` is the CPU flash kernel (``_scaled_dot_product_flash_attention_for_cpu``);
    ``"math"`` the reference composite (materialises the ``N x N`` scores); on CUDA ``"flash"``,
    ``"efficient"``, ``"cudnn"`` or ``"math"``, honouring an enclosing ``torch.nn.attention.sdpa_kernel``.
    """
    # torch has no public "which kernel will run" query (``can_use_flash_attention`` is CUDA-only),
    # so this asks the dispatcher's own selection function, the one SDPA calls.
    choice = SDPBackend(torch._fused_sdp_choice(q, k, v, dropout_p=dropout_p, scale=scale))
    name = BACKEND_NAMES.get(choice, choice.name.lower())
    return f"{name} (cpu)" if name == "flash" and q.device.type == "cpu" else name


@register_variant
class SoftmaxAttention(QKVAttention):
    """Exact softmax attention, ``softmax(q k^T * scale) v`` per head, through SDPA.

    Attributes
    ----------
    last_backend : the SDPA kernel of the latest forward pass (``None`` before the first).
    """

    variant = "softmax"

    def __init__(self, dim: int, num_heads: int, head_dim: int) -> None:
        super().__init__(dim, num_heads, head_dim)
        self.last_backend: str | None = None

    def mix(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        dropout_p = self.attn_drop_p if self.training else 0.0
        self.last_backend = sdpa_backend(q, k, v, dropout_p, self.scale)
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=self.scale)

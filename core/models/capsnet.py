"""A capsule network (Sabour et al., 2017) sized for 28x28 grey images on a CPU.

Convolutional features feed a primary-capsule conv whose output is cut into ``types`` capsule
types of ``in_dim`` dimensions at every position; each primary capsule predicts every class
capsule through its own matrix in the transformation tensor ``W[in_caps, out_caps, out_dim, in_dim]``,
and dynamic routing by agreement combines the predictions. The class score is the length of the
class capsule; training uses the margin loss. The reconstruction decoder of the paper is left
out: it regularises training but is not part of inference.
"""
from __future__ import annotations

import torch
from torch import nn


def squash(s: torch.Tensor, dim: int = -1, eps: float = 1e-8) -> torch.Tensor:
    """Shrink vectors to length in [0, 1) keeping direction: ``|s|^2/(1+|s|^2) * s/|s|``."""
    sq = (s * s).sum(dim, keepdim=True)
    return sq / (1.0 + sq) * s / torch.sqrt(sq + eps)


class CapsuleRouting(nn.Module):
    """Class capsules from primary capsules by dynamic routing.

    Parameters
    ----------
    in_caps, out_caps : number of input (primary) and output (class) capsules.
    in_dim, out_dim : their dimensions.
    iters : routing iterations.
    """

    def __init__(self, in_caps: int, out_caps: int, in_dim: int, out_dim: int, iters: int = 3) -> None:
        super().__init__()
        self.iters = iters
        self.W = nn.Parameter(0.05 * torch.randn(in_caps, out_caps, out_dim, in_dim))

    def predictions(self, u: torch.Tensor) -> torch.Tensor:
        """Prediction vectors u_hat[b, i, j] = W[i, j] @ u[b, i]; (B, in_caps, in_dim) -> (B, in_caps, out_caps, out_dim)."""
        return torch.einsum("ijdk,bik->bijd", self.W, u)

    def route(self, u_hat: torch.Tensor) -> torch.Tensor:
        """Routing by agreement over prediction vectors; returns class capsules (B, out_caps, out_dim)."""
        b_logits = torch.zeros(u_hat.shape[:3], device=u_hat.device, dtype=u_hat.dtype)  # (B, in, out)
        for it in range(self.iters):
            c = b_logits.softmax(dim=2)  # each input capsule spreads over the output capsules
            v = squash((c.unsqueeze(-1) * u_hat).sum(1))  # (B, out, out_dim)
            if it < self.iters - 1:
                b_logits = b_logits + (u_hat * v.unsqueeze(1)).sum(-1)
        return v

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.route(self.predictions(u))


class CapsNet(nn.Module):
    """Conv features, primary capsules, routed class capsules; logits are capsule lengths.

    Parameters
    ----------
    num_classes : class capsules.
    types : primary capsule types (channels of the primary conv / ``in_dim``).
    in_dim, out_dim : primary and class capsule dimensions.
    width : channels of the feature convs.
    in_chans, img_size : input channels and side length.
    """

    def __init__(
        self,
        num_classes: int = 10,
        types: int = 16,
        in_dim: int = 8,
        out_dim: int = 16,
        width: int = 64,
        in_chans: int = 1,
        img_size: int = 28,
        iters: int = 3,
    ) -> None:
        super().__init__()
        self.types, self.in_dim = types, in_dim
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, width // 2, 3, padding=1, bias=False),
            nn.BatchNorm2d(width // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(width // 2, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.primary = nn.Conv2d(width, types * in_dim, 3, stride=2, padding=1)
        side = img_size // 4
        self.digits = CapsuleRouting(types * side * side, num_classes, in_dim, out_dim, iters)

    def primary_capsules(self, x: torch.Tensor) -> torch.Tensor:
        """Squashed primary capsules (B, types*H*W, in_dim) from images."""
        p = self.primary(self.features(x))  # (B, types*in_dim, H, W)
        B, _, H, W = p.shape
        p = p.view(B, self.types, self.in_dim, H, W).permute(0, 1, 3, 4, 2)  # (B, types, H, W, in_dim)
        return squash(p.reshape(B, self.types * H * W, self.in_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.digits(self.primary_capsules(x))  # (B, classes, out_dim)
        return v.norm(dim=-1)  # capsule lengths in [0, 1)


def margin_loss(lengths: torch.Tensor, target: torch.Tensor, m_pos: float = 0.9, m_neg: float = 0.1, lam: float = 0.5) -> torch.Tensor:
    """Margin loss of Sabour et al.: present class length above ``m_pos``, absent ones below ``m_neg``."""
    t = nn.functional.one_hot(target, lengths.shape[1]).to(lengths.dtype)
    loss = t * (m_pos - lengths).clamp(min=0) ** 2 + lam * (1 - t) * (lengths - m_neg).clamp(min=0) ** 2
    return loss.sum(1).mean()


def is_capsule_model(model: nn.Module) -> bool:
    """Whether ``model`` scores classes by capsule lengths (a :class:`CapsuleRouting` inside) rather than logits."""
    return any(isinstance(m, CapsuleRouting) for m in model.modules())

"""The matrix-decomposition family (nmf, pnmf, ntf): Hamburger's bread around a non-negative factorization.

Geng et al.'s Hamburger replaces attention by: lower bread (a linear map, then ReLU so the
factorization sees non-negative data), the ham (a low-rank non-negative factorization of the tokens
of each sample, solved by a few multiplicative updates), and upper bread (a linear map of the
reconstruction). The reconstruction mixes tokens globally through the factors, which every token
helps to fit, at a cost linear in the number of tokens.

Weights from a timm ``Attention``: the lower bread is the value slice of ``qkv`` (rows
``2A:3A``, the map whose output attention would mix) and the upper bread is ``proj``, so the
factorization replaces exactly the ``softmax(q k^T) v`` step, on ``ReLU(v)``; queries and keys (and
``q_norm``/``k_norm``) have no counterpart and are dropped. The block's residual connection stays
outside, so there is no skip inside the module (the paper's Hamburger has one).

Prefix read-out (``readout = p``, off by default): a ViT that classifies from its class token needs
that token to gather the image, and a factorization gives it almost no path to do so (each token is
reconstructed from shared bases; on fmnist-vit nmf then fine-tunes to 68 % against the model's 90 %).
With ``readout = p`` the first ``p`` tokens (class and register tokens) are instead computed by
softmax attention of their own query over all tokens, with the timm module's q/k projections and the
same values: ``p`` queries, so the cost stays linear in N, while the other ``N - p`` tokens go through
the factorization.

One-step gradient (the paper's section 2.3): with ``one_step=True`` the initialisation and the
first ``steps - 1`` updates run under ``torch.no_grad`` and only the last update is differentiated,
so the autograd graph, and training memory, do not grow with ``steps``; ``one_step=False``
back-propagates through every update.

References
----------
Geng, Guo, Chen, Li, Wei, Lin. "Is Attention Better Than Matrix Decomposition?" ICLR 2021.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from core.attention._base import AttentionVariant, TimmParts, check_option

EPS = 1e-6  # added to every multiplicative-update denominator, as in the Hamburger reference code

Update = Callable[..., tuple[torch.Tensor, ...]]


def iterate(update: Update, state: tuple[torch.Tensor, ...], steps: int, *, one_step: bool,
            objective: Callable[..., torch.Tensor] | None = None, history: list[float] | None = None) -> tuple[torch.Tensor, ...]:
    """Apply ``state = update(*state)`` ``steps`` times; with ``one_step`` only the last under autograd.

    When ``history`` is a list, ``objective(*state)`` is appended to it before the first update and
    after each one (``steps + 1`` values), for checking that the updates never increase it.
    """
    grad = torch.is_grad_enabled()
    if history is not None:
        history.append(float(objective(*state)))
    for i in range(steps):
        with torch.set_grad_enabled(grad and not (one_step and i < steps - 1)):
            state = update(*state)
        if history is not None:
            history.append(float(objective(*state)))
    return state


def random_bases(shape: tuple[int, ...], generator: torch.Generator | None = None, *, like: torch.Tensor | None = None) -> torch.Tensor:
    """Uniform random non-negative bases ``(..., d, r)``, each column scaled to unit length (NMF2D's ``_build_bases``)."""
    kwargs = {} if like is None else {"device": like.device, "dtype": like.dtype}
    return F.normalize(torch.rand(shape, generator=generator, **kwargs), dim=-2)


class Hamburger(AttentionVariant):
    """Lower bread -> ReLU -> :meth:`ham` on per-head tokens ``(B, h, N, d)`` -> upper bread.

    The factor that is not solved per sample (NMF's bases, PNMF's projection, NTF's head and
    feature factors) starts from a fixed random buffer in eval mode, so evaluation is deterministic,
    and from fresh random values on each training forward pass, as the paper's ``RAND_INIT``.

    Parameters
    ----------
    dim : input width C.
    num_heads, head_dim : the groups the tokens are split into (the paper's S) and their width.
    rank : components of the factorization.
    steps : multiplicative updates per forward pass (the paper uses 6 in training, 7 at test).
    one_step : one-step gradient (``True``) or back-propagation through every update.
    readout : leading tokens computed by single-query softmax attention instead (see the module docstring).
    """

    def __init__(self, dim: int, num_heads: int, head_dim: int, rank: int, steps: int, one_step: bool,
                 readout: int = 0) -> None:
        super().__init__()
        check_option(self.variant, "rank", rank, isinstance(rank, int) and rank >= 1, "an integer of at least 1")
        check_option(self.variant, "steps", steps, isinstance(steps, int) and steps >= 1, "an integer of at least 1")
        check_option(self.variant, "readout", readout, isinstance(readout, int) and readout >= 0, "an integer of at least 0")
        self.num_heads, self.head_dim = num_heads, head_dim
        self.rank, self.steps, self.one_step, self.readout = rank, steps, bool(one_step), readout
        self.lower = nn.Linear(dim, num_heads * head_dim)
        self.upper = nn.Linear(num_heads * head_dim, dim)
        self.proj_drop: nn.Module = nn.Identity()
        # The read-out's query and key projections (see read_out: the keys are folded into the queries).
        self.q = nn.Linear(dim, num_heads * head_dim) if readout else None
        self.k = nn.Linear(dim, num_heads * head_dim) if readout else None
        self.q_norm: nn.Module = nn.Identity()
        self.k_norm: nn.Module = nn.Identity()
        self.scale = head_dim ** -0.5

    def load_timm(self, parts: TimmParts, calibration: torch.Tensor | None) -> None:
        width = self.num_heads * self.head_dim
        self.lower.weight.copy_(parts.qkv.weight[2 * width:])
        if parts.qkv.bias is None:
            self.lower.bias = None
        else:
            self.lower.bias.copy_(parts.qkv.bias[2 * width:])
        self.upper, self.proj_drop = parts.proj, parts.proj_drop
        if self.readout:
            for i, linear in enumerate((self.q, self.k)):
                linear.weight.copy_(parts.qkv.weight[i * width:(i + 1) * width])
                if parts.qkv.bias is None:
                    linear.bias = None
                else:
                    linear.bias.copy_(parts.qkv.bias[i * width:(i + 1) * width])
            self.q_norm, self.k_norm, self.scale = parts.q_norm, parts.k_norm, parts.scale

    @staticmethod
    def fixed_bases(shape: tuple[int, ...]) -> torch.Tensor:
        """The eval-mode initial factor: :func:`random_bases` from a fixed seed, the same in every build."""
        return random_bases(shape, torch.Generator().manual_seed(0))

    def init_factor(self, buffer: torch.Tensor, batch: int) -> torch.Tensor:
        """``buffer`` repeated over the batch in eval mode; fresh random bases of its shape in training."""
        if self.training:
            return random_bases((batch, *buffer.shape), like=buffer)
        return buffer.expand(batch, *buffer.shape)

    def ham(self, x: torch.Tensor) -> torch.Tensor:
        """The low-rank reconstruction of non-negative per-head tokens ``x`` ``(B, h, N, d)``, same shape."""
        raise NotImplementedError

    def read_out(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Softmax attention of the first ``readout`` tokens' queries over all tokens ``x`` with values ``v`` (B, h, N, d).

        With an identity ``k_norm`` the keys are never formed: ``q . (W_k x + b_k) = (W_k^T q) . x + q . b_k``, so
        the scores cost one (B, h, p, C) product and no (B, h, N, d) tensor. Hand-written because SDPA needs the keys.
        """
        B, N, C = x.shape
        h, d, p = self.num_heads, self.head_dim, self.readout
        q = self.q_norm(self.q(x[:, :p]).reshape(B, p, h, d).transpose(1, 2))  # (B, h, p, d)
        if not isinstance(self.k_norm, nn.Identity):
            k = self.k_norm(self.k(x).reshape(B, N, h, d).transpose(1, 2))
            return F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        folded = q @ self.k.weight.reshape(h, d, C)  # (B, h, p, C)
        scores = (folded.reshape(B, h * p, C) @ x.transpose(1, 2)).reshape(B, h, p, N)  # no x broadcast over heads
        if self.k.bias is not None:
            scores = scores + (q * self.k.bias.reshape(h, 1, d)).sum(-1, keepdim=True)
        return torch.softmax(scores * self.scale, dim=-1) @ v

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        v = self.lower(x).reshape(B, N, self.num_heads, self.head_dim).transpose(1, 2)  # (B, h, N, d)
        out = self.ham(F.relu(v))
        if self.readout:
            out[:, :, :self.readout] = self.read_out(x, v)  # in place: no second (B, h, N, d) tensor
        return self.proj_drop(self.upper(out.transpose(1, 2).reshape(B, N, self.num_heads * self.head_dim)))

"""Anchored (asymmetric) factorization: fit a layer on the inputs the compressed prefix gives it, to the outputs
the original layer gives on the original inputs.

Fitting each layer on its own dense inputs (``aa_svd`` applied independently) lets errors compound through depth:
layer ``k`` is tuned for inputs it will never see once the layers before it are compressed. Here layer ``k`` is
fitted, in forward order, on ``X̂`` (its inputs in the model compressed so far) against ``W X + b`` (the original
layer's outputs on the original inputs):

    min over rank-r W', and b'   ||W' X̂ + b' - (W X + b)||^2 + lam ||W' - W||^2

With a free bias the optimum has ``b' = b + W mu - W' mu_hat`` (the mean shift folded into the bias), and the rest
is the same problem on centred inputs. Its normal equations give the unconstrained solution
``W_ls = W (C + lam I) A^{-1}`` with ``A = X̂c X̂c^T + lam I`` and ``C = X̂c Xc^T``; the objective is a constant plus
``||(W' - W_ls) L||^2`` with ``A = L L^T``, so the best rank-r ``W'`` is the truncated SVD of ``W_ls L`` un-whitened
by ``L^{-1}`` — ``aa_svd``'s factorization (:class:`core.decompose.activation_aware.WhitenedSVD`) of ``W_ls``. When
``X̂ = X`` then ``W_ls = W`` and at full rank the layer is reproduced exactly; on any inputs the fit never has a
larger output error on the calibration data than independent ``aa_svd`` of the same rank, which is one of the
rank-r candidates.

Everything is float64; ``lam = damping x mean(diag(X̂c X̂c^T))`` as ``aa_svd`` damps. The moments are summed batch
by batch (:class:`Moments`), so the number of calibration inputs is not bounded by memory.

References
----------
Zhang, Zou, He, Sun. "Accelerating Very Deep Convolutional Networks for Classification and Detection." TPAMI 2016
(asymmetric reconstruction). Wang et al. "SVD-LLM" (ICLR 2025), its sequential local update.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from core.decompose import build_plan, conv_patches
from core.decompose.activation_aware import WhitenedSVD
from core.decompose.registry import get_method
from core.decompose.svd import truncated_svd, weight_matrix

METHOD = "aa_svd"  # the method whose factors an anchored fit produces


class FewSamplesWarning(UserWarning):
    """Fewer calibration rows than a layer's input dimension: the fit leans on its damping."""


def input_rows(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The vectors ``module``'s weight multiplies, ``(rows, D)`` float64: a Linear's input rows, a conv's patches."""
    if isinstance(module, nn.Linear):
        return x.reshape(-1, x.shape[-1]).to(torch.float64)
    patches = conv_patches(module, x)  # (N, D, L)
    return patches.transpose(1, 2).reshape(-1, patches.shape[1]).to(torch.float64)


@dataclass
class Moments:
    """Sums over calibration rows of the dense inputs ``x`` and compressed inputs ``x̂`` of one layer."""

    dim: int
    xh_xh: torch.Tensor = field(init=False)  # sum x̂ x̂^T (D, D)
    xh_x: torch.Tensor = field(init=False)  # sum x̂ x^T (D, D)
    x: torch.Tensor = field(init=False)  # sum x (D,)
    xh: torch.Tensor = field(init=False)  # sum x̂ (D,)
    rows: int = 0

    def __post_init__(self) -> None:
        zeros = dict(dtype=torch.float64)
        self.xh_xh, self.xh_x = torch.zeros(self.dim, self.dim, **zeros), torch.zeros(self.dim, self.dim, **zeros)
        self.x, self.xh = torch.zeros(self.dim, **zeros), torch.zeros(self.dim, **zeros)

    def add(self, x: torch.Tensor, xh: torch.Tensor) -> None:
        """Add rows ``x`` (dense) and ``xh`` (compressed), both ``(rows, D)`` float64."""
        self.xh_xh += xh.T @ xh
        self.xh_x += xh.T @ x
        self.x += x.sum(0)
        self.xh += xh.sum(0)
        self.rows += len(x)

    def centred(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(X̂c X̂c^T, X̂c Xc^T, mu, mu_hat)``: the centred sums and the two means."""
        n = max(self.rows, 1)
        mu, mu_hat = self.x / n, self.xh / n
        return self.xh_xh - n * torch.outer(mu_hat, mu_hat), self.xh_x - n * torch.outer(mu_hat, mu), mu, mu_hat


def anchored_factorization(module: nn.Module, moments: Moments, damping: float = 0.01, name: str = "",
                           centre: bool = True) -> WhitenedSVD:
    """The whitened SVD of ``W_ls`` (module docstring) for ``module``'s dense weight and ``moments``, on centred
    inputs when ``centre`` (the bias then takes the mean shift) or on the raw ones; a :class:`FewSamplesWarning`
    naming the layer when there are fewer rows than input features."""
    if moments.rows < moments.dim:
        warnings.warn(f"{name or type(module).__name__}: {moments.rows} calibration rows for {moments.dim} input "
                      f"features; the fit relies on its damping ({damping:g})", FewSamplesWarning, stacklevel=2)
    gram, cross, _, _ = moments.centred() if centre else (moments.xh_xh, moments.xh_x, None, None)
    mean_diag = gram.diagonal().mean().item()
    lam = damping * mean_diag if mean_diag > 0 else 1.0
    eye = torch.eye(moments.dim, dtype=torch.float64)
    A = gram + lam * eye
    L = torch.linalg.cholesky(A)
    W = weight_matrix(module)[0].to(torch.float64)  # (O, D)
    W_ls = torch.linalg.solve(A, (cross + lam * eye) @ W.T).T  # A is symmetric: W_ls = W (C + lam I) A^{-1}
    svd = truncated_svd(W_ls @ L)
    return WhitenedSVD(svd.U, svd.S, svd.Vh, L)


def anchored_layer(module: nn.Module, rank: int, moments: Moments, *, damping: float = 0.01, bias: bool = True,
                   name: str = "") -> nn.Module:
    """``module`` as ``aa_svd``'s two layers at ``rank``, fitted on the compressed inputs to the dense outputs
    (module docstring); with ``bias`` the mean output shift is folded into the second layer's bias (added if
    ``module`` has none)."""
    method = get_method(METHOD)
    rank = method.validate_rank(module, rank)
    factorization = anchored_factorization(module, moments, damping, name, centre=bias)
    with torch.no_grad():
        factors = factorization.factors(rank)
        weights = method.layer_weights(module, rank, factors)
        specs = method.plan(module, rank)
        new_bias = None if module.bias is None else module.bias.detach().to(torch.float64)
        if bias:
            _, _, mu, mu_hat = moments.centred()
            W = weight_matrix(module)[0].to(torch.float64)
            approx = (factors[1] @ factors[0])[0]  # (O, D) the rank-r weight
            shift = W @ mu - approx @ mu_hat
            new_bias = shift if new_bias is None else new_bias + shift
            specs[-1] = replace(specs[-1], bias=True)
        return build_plan(specs, weights, new_bias, module.weight, method=METHOD, rank=rank)

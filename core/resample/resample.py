"""Change a group's channel count by resampling its weights at a new density (Integral Neural Networks).

Channel ``i`` of ``N`` is read as the sample at ``x_i = i / (N - 1)`` of a function on ``[0, 1]``; a
density ``d`` keeps ``n = round(d N)`` channels at ``y_j = j / (n - 1)``, each member tensor
interpolated along its channel axis by a cubic (Catmull-Rom) interpolation matrix ``M (n, N)``:

- producer side (filters, biases, BatchNorm entries): ``W' = M W``;
- consumer side (the next layer's input columns, a routing tensor's input capsules): ``W' = (N / n) M W``,
  INN's quadrature weight, so that the sum over channels the consumer computes keeps its size.

At density 1 ``M`` is the identity and a group is left exactly as it was.

BatchNorm is resampled, not folded: its weight, bias, running mean and running variance are
interpolated with the same ``M`` as the conv filters before it (the variance clamped positive, since
a cubic can overshoot). Folding BatchNorm into the conv would make the resampled pre-activations the
exact interpolation of the original ones, but it turns BatchNorm into a fixed affine map that
:func:`core.recovery.recalibrate_batchnorm` and fine-tuning can no longer re-estimate, and on the
shipped fmnist-resnet neither is clearly closer (one group at a time at densities 0.8 and 0.6, 1,000
test images: folding better in 6 of 12 cases; every group at 0.9: 50 % folded vs 37 %, at 0.7: 15 % vs
26 %). Resampling keeps the architecture, and BatchNorm with it.

The resampled tensors are computed with torch (:func:`resampled_state`), so they are differentiable
with respect to the full-width weights, which integral training (:mod:`core.resample.integral`) needs.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from core.errors import RankscopeError, close_matches_hint
from core.models.capsnet import CapsNet
from core.profile.counts import count_params
from core.resample.groups import ChannelGroup, Member, channel_groups, channel_view
from core.resample.order import order_model


def new_size(size: int, density: float) -> int:
    """Channels (or heads) a group of ``size`` keeps at ``density``, resampled or pruned: ``round(density * size)``, at least 1."""
    return max(1, round(density * size))


def interpolation_matrix(size: int, new: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``M (new, size)``: Catmull-Rom cubic interpolation from ``size`` uniform samples on [0, 1] to ``new``.

    Outside the ends, the missing neighbours are extrapolated linearly (``f(-1) = 2 f(0) - f(1)``), so
    every row sums to 1 and linear functions of the channel index are reproduced exactly. Written by
    hand rather than with ``scipy.interpolate`` because the matrix is applied with torch, keeping the
    resampled weights differentiable with respect to the full-width ones; ``M`` is the identity when
    ``new == size``.
    """
    if new == size:
        return torch.eye(size, dtype=dtype)
    if size == 1:
        return torch.ones(new, 1, dtype=dtype)
    if new == 1:
        pos = torch.tensor([(size - 1) / 2], dtype=torch.float64)  # a single channel sits in the middle
    else:
        pos = torch.arange(new, dtype=torch.float64) * (size - 1) / (new - 1)
    k = pos.floor().clamp(max=size - 2)
    u = pos - k  # (new,) in [0, 1]
    weights = torch.stack([  # Catmull-Rom (cubic convolution, a = -1/2) weights of samples k-1 .. k+2
        (-u**3 + 2 * u**2 - u) / 2,
        (3 * u**3 - 5 * u**2 + 2) / 2,
        (-3 * u**3 + 4 * u**2 + u) / 2,
        (u**3 - u**2) / 2,
    ], dim=1)  # (new, 4)
    M = torch.zeros(new, size + 2, dtype=torch.float64)  # columns: sample -1, 0 .. size-1, sample size
    cols = k.long()[:, None] + torch.arange(4)  # (new, 4), shifted by the ghost column
    M.scatter_add_(1, cols, weights)
    ghost_lo, ghost_hi = M[:, 0].clone(), M[:, -1].clone()
    M = M[:, 1:-1]
    M[:, 0] += 2 * ghost_lo  # f(-1) = 2 f(0) - f(1)
    M[:, 1] -= ghost_lo
    M[:, -1] += 2 * ghost_hi  # f(N) = 2 f(N-1) - f(N-2)
    M[:, -2] -= ghost_hi
    return M.to(dtype)


def resample_member(t: torch.Tensor, member: Member, size: int, M: torch.Tensor) -> torch.Tensor:
    """``t`` with the member's channel axis resampled by ``M (n, size)``, consumers scaled by ``size / n``."""
    n = M.shape[0]
    view = channel_view(t, member, size).movedim(member.axis + 1, -1)  # (..., size)
    out = (view @ M.to(t.dtype).T).movedim(-1, member.axis + 1)  # (pre, outer, n, inner, post)
    if member.role == "in":
        out = out * (size / n)
    elif member.key.endswith("running_var"):
        out = out.clamp_min(1e-5)  # a cubic may overshoot below zero between two small variances
    shape = list(t.shape)
    shape[member.axis] = member.outer * n * member.inner
    return out.reshape(shape).contiguous()  # CPU conv backward has crashed (double free) on strided weights


def check_densities(groups: dict[str, ChannelGroup], densities: dict[str, float]) -> None:
    """Raise :class:`RankscopeError` for an unknown group name or a density outside (0, 1]."""
    valid = list(groups)
    for name, d in densities.items():
        if name not in groups:
            raise RankscopeError(
                f"unknown channel group {name!r}" + close_matches_hint(name, valid) + f"; valid groups: {', '.join(valid)}"
            )
        if not 0 < d <= 1:
            raise RankscopeError(f"density of {name} must be in (0, 1], got {d}")


def resampled_state(
    state: dict[str, torch.Tensor], groups: dict[str, ChannelGroup], densities: dict[str, float]
) -> dict[str, torch.Tensor]:
    """A new state dict with each group in ``densities`` resampled; differentiable in ``state``'s tensors.

    Tensors that no resampled group touches are passed through as they are (same objects), so
    ``torch.func.functional_call(small, resampled_state(...), x)`` with ``small`` from
    :func:`shrunk_copy` trains the full-width weights. A tensor in two groups (a conv's outputs in
    one, its inputs in the next) is resampled along both axes in turn.
    """
    out = dict(state)
    for name, d in densities.items():
        group = groups[name]
        n = new_size(group.size, d)
        if n == group.size:
            continue
        M = interpolation_matrix(group.size, n)
        for member in group.members:
            out[member.key] = resample_member(out[member.key], member, group.size, M)
    return out


def _sync_shapes(model: nn.Module) -> None:
    """Set every layer's size attributes from its (resampled) tensors."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.out_channels, module.in_channels = module.weight.shape[0], module.weight.shape[1] * module.groups
        elif isinstance(module, nn.Linear):
            module.out_features, module.in_features = module.weight.shape
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.num_features = (module.weight if module.weight is not None else module.running_mean).shape[0]
        elif isinstance(module, CapsNet):
            module.types = module.primary.weight.shape[0] // module.in_dim
        if all(hasattr(module, a) for a in ("qkv", "num_heads", "head_dim", "attn_dim")):  # timm Attention
            module.num_heads = module.qkv.weight.shape[0] // (3 * module.head_dim)
            module.attn_dim = module.num_heads * module.head_dim


def shrunk_copy(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of ``model`` holding ``state`` (detached), with smaller tensors and matching size attributes."""
    new = copy.deepcopy(model)
    targets = dict(new.named_parameters()) | dict(new.named_buffers())
    for key, t in state.items():
        owner_path, _, attr = key.rpartition(".")
        owner = new.get_submodule(owner_path)
        value = t.detach().clone()
        if isinstance(targets.get(key), nn.Parameter):
            setattr(owner, attr, nn.Parameter(value, requires_grad=targets[key].requires_grad))
        else:
            owner._buffers[attr] = value
    _sync_shapes(new)
    return new


@dataclass(frozen=True)
class GroupChange:
    """One group's width before and after resampling."""

    name: str
    kind: str
    channels: int
    new_channels: int
    density: float


@dataclass(frozen=True)
class ResampleReport:
    """What :func:`resample_model` changed: one row per group, and the parameter counts."""

    groups: tuple[GroupChange, ...]
    params_before: int
    params_after: int


def resample_model(
    model: nn.Module, example: torch.Tensor, densities: dict[str, float], *, order: bool = True
) -> tuple[nn.Module, ResampleReport]:
    """A new, physically smaller model with each named group resampled at its density.

    Parameters
    ----------
    model : the network (left untouched).
    example : an input batch for tracing the channel groups.
    densities : group name (see :func:`core.resample.groups.channel_groups`) -> density in (0, 1];
        groups not named keep their width.
    order : first reorder every group's channels smoothly (:func:`core.resample.order.order_model`);
        ``False`` interpolates the channels in their stored order.

    Returns
    -------
    tuple[nn.Module, ResampleReport]
        The resampled model in eval mode (real smaller convs, linears, BatchNorms, attention with fewer
        heads, capsule routing with fewer input capsules) and what changed.

    Raises
    ------
    RankscopeError
        An unknown group name (the valid ones are listed) or a density outside (0, 1].
    """
    groups = channel_groups(model, example)
    check_densities(groups, densities)
    source = order_model(model, {n: groups[n] for n in densities})[0] if order else model
    with torch.no_grad():
        state = resampled_state(source.state_dict(), groups, densities)
    small = shrunk_copy(source, state).eval()
    changes = tuple(
        GroupChange(n, groups[n].kind, groups[n].size, new_size(groups[n].size, d), d) for n, d in densities.items()
    )
    return small, ResampleReport(changes, count_params(model), count_params(small))

"""Order each group's channels so that the weights vary smoothly along the channel axis.

Integral Neural Networks read a layer's channels as samples of a continuous function; a trained
network's channels come in arbitrary order, so, as INN does, the order is chosen as a short
travelling-salesman path through the channels (nearest-neighbour start, then 2-opt), with the
distance between two channels the L2 distance of their slices of every member tensor (each member
scaled to unit norm, so that a large tensor does not drown a BatchNorm vector). The same permutation
is applied to every member, so the network computes exactly the same function.

References
----------
Solodskikh et al., "Integral Neural Networks", CVPR 2023.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from core.resample.groups import ChannelGroup, Member, channel_matrix, channel_view


def channel_features(state: dict[str, torch.Tensor], group: ChannelGroup) -> np.ndarray:
    """``(N, features)``: each channel's slices of every member tensor, each member scaled to unit norm."""
    blocks = []
    for member in group.members:
        rows = channel_matrix(state[member.key].detach().float(), member, group.size)
        blocks.append((rows / rows.norm().clamp_min(1e-12)).numpy())
    return np.concatenate(blocks, axis=1)


def _nearest_neighbour_path(dist: np.ndarray) -> np.ndarray:
    n = len(dist)
    start = int(dist.sum(1).argmax())  # an outlying channel: a natural end of the path
    path = [start]
    free = np.ones(n, dtype=bool)
    free[start] = False
    for _ in range(n - 1):
        d = np.where(free, dist[path[-1]], np.inf)
        nxt = int(d.argmin())
        path.append(nxt)
        free[nxt] = False
    return np.array(path)


def two_opt_path(dist: np.ndarray, max_passes: int = 100) -> np.ndarray:
    """A short open path through every node of the symmetric distance matrix ``dist`` (N, N).

    Nearest-neighbour start, then 2-opt: reverse the segment ``path[i+1..j]`` whenever that shortens
    the path, until no reversal helps. The open path is solved as a closed tour through one extra
    node at distance 0 from all others, cut there. Each step scores every ``j`` for one ``i`` at once
    (vectorised numpy), so 512 channels take well under a second. Written by hand: no dependency
    (scipy included) has a TSP heuristic, and 2-opt is the one INN uses.
    """
    n = len(dist)
    if n <= 3:
        return np.arange(n)
    d = np.zeros((n + 1, n + 1))
    d[:n, :n] = dist
    tour = np.concatenate([[n], _nearest_neighbour_path(dist)])  # closed tour through the extra node n
    m = n + 1
    for _ in range(max_passes):
        improved = False
        for i in range(m - 2):
            a, b = tour[i], tour[i + 1]
            j = np.arange(i + 2, m)
            c, e = tour[j], tour[(j + 1) % m]
            gain = d[a, b] + d[c, e] - d[a, c] - d[b, e]
            if i == 0:
                gain[-1] = 0.0  # j = m-1 with i = 0 reverses the whole tour: no change
            best = int(gain.argmax())
            if gain[best] > 1e-12:
                jj = j[best]
                tour[i + 1 : jj + 1] = tour[i + 1 : jj + 1][::-1].copy()
                improved = True
        if not improved:
            break
    cut = int(np.flatnonzero(tour == n)[0])
    return np.concatenate([tour[cut + 1 :], tour[:cut]])


def channel_order(state: dict[str, torch.Tensor], group: ChannelGroup) -> np.ndarray:
    """The permutation (new position -> old channel) that makes ``group``'s weights smooth along the axis."""
    feats = channel_features(state, group)
    sq = (feats**2).sum(1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * feats @ feats.T, 0.0)).astype(np.float64)  # (N, N)
    return two_opt_path(dist)


def permute_member(t: torch.Tensor, member: Member, size: int, perm: torch.Tensor) -> torch.Tensor:
    """``t`` with the channels of ``member``'s axis taken in the order ``perm``."""
    view = channel_view(t, member, size)
    return view.index_select(member.axis + 1, perm).reshape(t.shape)


def order_model(model: nn.Module, groups: dict[str, ChannelGroup]) -> tuple[nn.Module, dict[str, np.ndarray]]:
    """A copy of ``model`` with every group's channels reordered smoothly, and the permutations used.

    The copy computes the same function as ``model`` (every member of a group is permuted alike);
    ``model`` is left untouched.
    """
    new = copy.deepcopy(model)
    state = new.state_dict()  # shares storage with the copy's parameters and buffers
    perms = {}
    for name, group in groups.items():
        perm = channel_order(state, group)
        perms[name] = perm
        index = torch.as_tensor(perm, dtype=torch.long)
        with torch.no_grad():
            for member in group.members:
                t = state[member.key]
                t.copy_(permute_member(t, member, group.size, index))
    return new, perms

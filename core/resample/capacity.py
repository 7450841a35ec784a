"""How many channels a group needs, from the spectrum of its ordered weights along the channel axis.

Once a group's channels are ordered smoothly (:mod:`core.resample.order`), each member tensor is a
function of the channel coordinate sampled at N points. Its DCT-II along that axis (orthonormal, so
energies add up) says how fast it varies: a group whose energy sits in the first ``f`` frequencies
is, by Nyquist-Shannon, captured by about ``2 f`` samples, so the recommended density is
``min(1, 2 f / N)``.

Only the weight-like members (conv filters, linear weights and input columns, routing tensors, not
biases or BatchNorm statistics) enter the spectrum, each scaled to unit energy so that the group's
largest tensor does not decide alone.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.fft
import torch
from torch import nn

from core.resample.groups import ChannelGroup, channel_groups, channel_matrix
from core.resample.order import order_model
from core.resample.resample import check_densities  # the one place group names are validated


def spectrum(state: dict[str, torch.Tensor], group: ChannelGroup) -> np.ndarray:
    """Energy per DCT-II frequency ``(N,)`` of ``group``'s weights along the channel axis, summing to 1.

    ``state`` holds the weights in the order to analyse (ordered first: the spectrum of shuffled
    channels is flat). Each weight member is flattened to ``(N, -1)``, transformed along ``N`` and its
    energy summed over the other dimensions, after scaling the member to unit energy.
    """
    energy = np.zeros(group.size)
    for member in group.members:
        if state[member.key].dim() < 2:
            continue  # biases and BatchNorm vectors: one number per channel, not a layer's weights
        rows = channel_matrix(state[member.key].detach().double(), member, group.size).numpy()  # (N, rest)
        coef = scipy.fft.dct(rows, type=2, norm="ortho", axis=0)
        e = (coef**2).sum(axis=1)
        energy += e / max(e.sum(), 1e-300)
    total = energy.sum()
    return energy / total if total > 0 else energy


def cutoff(energy: np.ndarray, fraction: float = 0.95) -> int:
    """The fewest leading frequencies ``f`` whose energy is at least ``fraction`` of the total."""
    return int(np.searchsorted(np.cumsum(energy), fraction * energy.sum() - 1e-12) + 1)


def recommended_density(energy: np.ndarray, fraction: float = 0.95) -> float:
    """``min(1, 2 f / N)`` with ``f`` the :func:`cutoff` of the spectrum ``energy`` (N,)."""
    return min(1.0, 2 * cutoff(energy, fraction) / len(energy))


def _ordered(model: nn.Module, groups: dict[str, ChannelGroup], order: bool) -> dict[str, torch.Tensor]:
    return (order_model(model, groups)[0] if order else model).state_dict()


def capacity(model: nn.Module, example: torch.Tensor, energy: float = 0.95, *, order: bool = True) -> pd.DataFrame:
    """Recommended density of every channel group from its spectrum.

    Parameters
    ----------
    model : the network (left untouched).
    example : an input batch for tracing the channel groups.
    energy : fraction of the spectral energy the kept frequencies must hold.
    order : order the channels smoothly first (``False`` for a model already ordered, e.g. an integral one).

    Returns
    -------
    pandas.DataFrame
        One row per group in model order: ``group``, ``kind``, ``channels``, ``recommended_density``,
        ``cutoff`` (the number of leading frequencies holding ``energy`` of the total).
    """
    groups = channel_groups(model, example)
    state = _ordered(model, groups, order)
    rows = []
    for name, group in groups.items():
        e = spectrum(state, group)
        rows.append({"group": name, "kind": group.kind, "channels": group.size,
                     "recommended_density": recommended_density(e, energy), "cutoff": cutoff(e, energy)})
    return pd.DataFrame(rows, columns=["group", "kind", "channels", "recommended_density", "cutoff"])


def group_spectrum(model: nn.Module, example: torch.Tensor, name: str, *, order: bool = True) -> pd.DataFrame:
    """The spectrum of one group: ``frequency``, ``energy`` (fractions summing to 1) and ``cumulative``.

    Raises
    ------
    RankscopeError
        ``name`` is not a channel group of ``model`` (the valid ones are listed).
    """
    groups = channel_groups(model, example)
    check_densities(groups, {name: 1.0})
    e = spectrum(_ordered(model, {name: groups[name]}, order), groups[name])
    return pd.DataFrame({"frequency": np.arange(len(e)), "energy": e, "cumulative": np.cumsum(e)})

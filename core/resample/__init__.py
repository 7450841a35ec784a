"""Sampling density (Integral Neural Networks): channel groups, smooth ordering, resampling, capacity.

``channel_groups(model, example)`` finds the groups; ``resample_model(model, example, {name: density})``
builds a smaller model by resampling each group at its density; ``capacity(model, example)`` estimates
each group's density from its spectrum; :mod:`core.resample.integral` fine-tunes a model to stay
accurate at every density.
"""
from core.resample.capacity import capacity, group_spectrum
from core.resample.groups import ChannelGroup, Member, channel_groups
from core.resample.order import order_model
from core.resample.resample import ResampleReport, interpolation_matrix, resample_model, resampled_state, shrunk_copy

__all__ = [
    "ChannelGroup", "Member", "ResampleReport", "capacity", "channel_groups", "group_spectrum",
    "interpolation_matrix", "order_model", "resample_model", "resampled_state", "shrunk_copy",
]

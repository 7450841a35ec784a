"""A/B latency: two models timed alternately in this process, so that load on the machine falls on both alike."""
from __future__ import annotations

import statistics
from collections.abc import Callable

import torch
from torch import nn

from core.profile.latency import time_calls

CPU = torch.device("cpu")


def ab_calls(first: Callable[[], object], second: Callable[[], object], repeats: int,
             warmup: int = 3) -> tuple[list[float], list[float]]:
    """CPU milliseconds of each of ``repeats`` calls of ``first`` and ``second``, made alternately after ``warmup``
    untimed calls of each: whatever else loads the machine meanwhile slows both alike."""
    times: tuple[list[float], list[float]] = ([], [])
    for call in (first, second):
        for _ in range(warmup):
            call()
    for _ in range(repeats):
        for call, samples in zip((first, second), times):
            samples += time_calls(call, warmup=0, repeats=1, device=CPU)
    return times


def ab_latency(first: nn.Module, second: nn.Module, example: torch.Tensor, repeats: int) -> tuple[float, float]:
    """Median CPU milliseconds of ``first(example)`` and ``second(example)``, timed alternately (:func:`ab_calls`).

    Parameters
    ----------
    first, second : the two models (e.g. the dense one and a compressed copy), run on the CPU in inference mode.
    example : the input batch both are called on.
    repeats : timed calls per model, after 4 warm-up calls each (their timings discarded).

    Returns
    -------
    tuple[float, float]
        The median milliseconds of ``first`` and of ``second``.
    """
    with torch.inference_mode():
        a, b = ab_calls(lambda: first(example), lambda: second(example), repeats, warmup=4)
    return statistics.median(a), statistics.median(b)

"""A/B latency: two models timed alternately in this process, so that load on the machine falls on both alike."""
from __future__ import annotations

import statistics

import torch
from torch import nn

from core.profile.latency import time_calls


def ab_latency(first: nn.Module, second: nn.Module, example: torch.Tensor, repeats: int) -> tuple[float, float]:
    """Median CPU milliseconds of ``first(example)`` and ``second(example)``, timed alternately.

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
    cpu, times = torch.device("cpu"), ([], [])
    with torch.inference_mode():
        for model in (first, second):
            time_calls(lambda: model(example), warmup=3, repeats=1, device=cpu)
        for _ in range(repeats):
            for model, samples in zip((first, second), times):
                samples += time_calls(lambda: model(example), warmup=0, repeats=1, device=cpu)
    return statistics.median(times[0]), statistics.median(times[1])

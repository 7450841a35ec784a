"""Modules with known costs for the profiler tests (importable as tests.profile.helpers, so they pickle into a child process)."""
from __future__ import annotations

import time

import torch
from torch import nn

MB = 1e6  # the tiny net's sizes and costs (CONV_FLOPS, ...) are in tests/helpers.py, beside it


class Sleeper(nn.Module):
    """Sleeps ``seconds`` per forward and records the thread count, mode and input shape it ran with."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.seen: list[tuple[int, bool, tuple[int, ...]]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((torch.get_num_threads(), self.training, tuple(x.shape)))
        time.sleep(self.seconds)
        return x


class Allocates(nn.Module):
    """Fills a tensor of ``mb`` MB of float32 in its forward, so the pages are really touched."""

    def __init__(self, mb: int) -> None:
        super().__init__()
        self.numel = mb * 1_000_000 // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.ones(self.numel).sum()


class FixedLogits(nn.Module):
    """Returns the same logits row for every input image."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1)

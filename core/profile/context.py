"""Context managers that set up a measurement and undo it afterwards: thread count, eval mode, device."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from core.profile.checks import resolve_threads


@contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run the block with ``torch.set_num_threads(threads)`` and restore the previous count; yields the count used."""
    before = torch.get_num_threads()
    used = resolve_threads(threads)
    torch.set_num_threads(used)
    try:
        yield used
    finally:
        torch.set_num_threads(before)


@contextmanager
def prepared(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode on ``device`` for the block, then restore its modes and device.

    ``nn.Module.to`` works in place, so the caller's model is moved back to where its first
    parameter was (CPU for a model without parameters) and each submodule gets its training flag back.
    """
    modes = {m: m.training for m in model.modules()}
    first = next(model.parameters(), None)
    home = first.device if first is not None else torch.device("cpu")
    model.eval().to(device)
    try:
        yield model
    finally:
        model.to(home)
        for module, training in modes.items():
            module.training = training

"""Checks that model outputs are class logits, shared by the tasks that score logits."""
from __future__ import annotations

from typing import Any

import torch

from core.errors import RankscopeError


def check_logits(outputs: Any, task: str, what: str = "outputs") -> torch.Tensor:
    """Return ``outputs`` when it is a ``(batch, classes)`` tensor, else raise a one-line :class:`RankscopeError`.

    Parameters
    ----------
    outputs : what a model returned for a batch.
    task : the task's name, for the message.
    what : which outputs these are, for the message (``"outputs"``, ``"original model's outputs"``).
    """
    expected = f"the {task} task scores logits of shape (batch, classes), but the {what}"
    if not isinstance(outputs, torch.Tensor):
        raise RankscopeError(f"{expected} are a {type(outputs).__name__}")
    if outputs.ndim != 2:
        raise RankscopeError(f"{expected} have shape {tuple(outputs.shape)}")
    return outputs

"""Checks that model outputs are logits (per class, or per token and vocabulary entry), shared by the tasks that
score them."""
from __future__ import annotations

from typing import Any

import torch

from core.errors import RankscopeError


SHAPES = {2: "logits of shape (batch, classes)", 3: "next-token logits of shape (batch, tokens, vocabulary)"}
"""What the tasks score, by the number of dimensions of the logits."""


def check_logits(outputs: Any, task: str, what: str = "outputs", ndim: int = 2) -> torch.Tensor:
    """Return ``outputs`` when it is a tensor of logits with ``ndim`` dimensions (:data:`SHAPES`), else raise a
    one-line :class:`RankscopeError`.

    Parameters
    ----------
    outputs : what a model returned for a batch.
    task : the task's name, for the message.
    what : which outputs these are, for the message (``"outputs"``, ``"original model's outputs"``).
    ndim : 2 for class logits, 3 for a language model's next-token logits.
    """
    expected = f"the {task} task scores {SHAPES[ndim]}, but the {what}"
    if not isinstance(outputs, torch.Tensor):
        raise RankscopeError(f"{expected} are a {type(outputs).__name__}")
    if outputs.ndim != ndim:
        raise RankscopeError(f"{expected} have shape {tuple(outputs.shape)}")
    return outputs

"""The one rank vocabulary: what a rank is, how it is written, read, checked and scaled.

A :data:`Rank` is an ``int`` for single-mode methods (``svd``, ``cp``, ``tt``, ``spatial_svd``, …) and a
``tuple`` of ints, one per mode, for Tucker-like ones (``tucker2``: (input, output); ``capsule_tucker``:
four modes). Every part of rankscope — plans, sweeps, the dashboard and the CLI — passes ranks in this
form and converts only at its edges with the functions here:

- text (``"8"``, ``"8x4"``): :func:`rank_text` / :func:`parse_rank`;
- plan files (``rank: 8`` or ``ranks: [8, 4]``): :func:`plan_value` / :func:`parse_rank`;
- a fraction of the full rank: :func:`rank_at`, and :func:`resolve_rank`, which reads an int as a rank and a
  float in (0, 1) as a fraction of the maximum, as tensorly's ``rank`` arguments do.

:func:`rank_problem` is the one check of a rank against a layer; :func:`check_rank` raises it.
"""
from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Union

import numpy as np
from torch import nn

from core.decompose.registry import Method
from core.errors import RankscopeError

Rank = Union[int, tuple[int, ...]]
"""A method's rank: an int for single-mode methods, a tuple of ints (one per mode) otherwise."""

# What each rank entry cuts, per method arity (the Tucker order is (input, output); capsule modes i, j, d, k).
MODE_NAMES = {
    1: ("rank",),
    2: ("input rank", "output rank"),
    4: ("input capsules", "output capsules", "output dim", "input dim"),
}


def mode_names(method: Method) -> tuple[str, ...]:
    """Labels for the entries of ``method``'s rank."""
    return MODE_NAMES.get(method.rank_arity, tuple(f"rank {i + 1}" for i in range(method.rank_arity)))


def rank_values(rank: Rank) -> tuple[int, ...]:
    """The rank as one value per mode: ``8 -> (8,)``, ``(8, 4) -> (8, 4)``."""
    return tuple(int(r) for r in rank) if isinstance(rank, (tuple, list)) else (int(rank),)


def as_rank(method: Method, values: Sequence[int]) -> Rank:
    """A rank in ``method``'s form from one value per mode."""
    return int(values[0]) if method.rank_arity == 1 else tuple(int(v) for v in values)


def max_ranks(method: Method, module: nn.Module) -> tuple[int, ...]:
    """``method.max_rank(module)`` as one value per mode."""
    return rank_values(method.max_rank(module))


def rank_text(rank: Rank | None) -> str:
    """``8 -> "8"``, ``(4, 8) -> "4x8"``, ``None -> ""``."""
    return "" if rank is None else "x".join(map(str, rank_values(rank)))


def plan_value(rank: Rank) -> int | list[int]:
    """The rank as a plan file writes it: an int (``rank: 8``) or a list (``ranks: [8, 4]``)."""
    return list(rank_values(rank)) if isinstance(rank, (tuple, list)) else int(rank)


def parse_rank(value: object, arity: int | None = None) -> Rank:
    """Read a rank from text (``"8"``, ``"8x4"``, ``"8, 4"``), an int, or a list/tuple of ints.

    ``arity`` (the method's number of modes), when given, fixes the form: 1 gives an int, more a tuple
    of that length. Without it a single value gives an int and several give a tuple.

    Raises
    ------
    RankscopeError
        Not integers, or the wrong number of them for ``arity``.
    """
    if isinstance(value, str):
        parts = [p for p in value.replace(",", "x").replace("×", "x").split("x") if p.strip()]
        try:
            values = tuple(int(p) for p in parts)
        except ValueError:
            raise RankscopeError(f"rank {value!r} is not an integer or integers joined by 'x' (e.g. 8 or 8x4)") from None
    elif isinstance(value, (list, tuple)):
        values = tuple(value)
    else:
        values = (value,)
    try:
        if not values or any(isinstance(v, bool) for v in values):
            raise TypeError
        values = tuple(operator.index(v) for v in values)
    except TypeError:
        raise RankscopeError(f"rank {value!r} must be an integer or a list of integers") from None
    if arity is not None and len(values) != arity:
        raise RankscopeError(f"rank {value!r} has {len(values)} value{'s' * (len(values) != 1)}; the method takes {arity}")
    if arity == 1 or (arity is None and len(values) == 1 and not isinstance(value, (list, tuple))):
        return values[0]
    return values


def rank_problem(method: Method, module: nn.Module, rank: object) -> str | None:
    """Why ``rank`` is not a valid rank of ``method`` on ``module`` (each mode in 1..max), or ``None``."""
    tops = max_ranks(method, module)
    if rank is None:
        return f"{method.name} needs {'rank: N' if method.rank_arity == 1 else f'ranks: [{len(tops)} integers]'}"
    if isinstance(rank, str):  # text is read at the edges (parse_rank); a layer takes ints
        return f"rank {rank!r} is not an integer"
    try:
        values = rank_values(parse_rank(rank))
    except RankscopeError:
        return f"rank {rank!r} is not an integer"
    if len(values) != len(tops):
        return f"{method.name} takes {len(tops)} rank{'s' * (len(tops) > 1)}, got {len(values)}"
    bad = [f"{v} not in 1..{t}" for v, t in zip(values, tops) if not 1 <= v <= t]
    return f"rank out of range ({', '.join(bad)})" if bad else None


def check_rank(method: Method, module: nn.Module, rank: object) -> Rank:
    """``rank`` in ``method``'s form, checked against ``module`` (see :func:`rank_problem`).

    Raises
    ------
    RankscopeError
        The rank does not fit; the message names the method and the layer.
    """
    if rank_problem(method, module, rank):
        tops = max_ranks(method, module)
        expected = (f"an integer from 1 to {tops[0]}" if method.rank_arity == 1
                    else f"{method.rank_arity} integers, each from 1 up to {method.max_rank(module)}")
        layer = f"{type(module).__name__}({module.extra_repr()})" if module.extra_repr() else type(module).__name__
        raise RankscopeError(f"rank {rank!r} for {method.name} on {layer} must be {expected}")
    return as_rank(method, rank_values(parse_rank(rank)))


def rank_at(method: Method, module: nn.Module, fraction: float) -> Rank:
    """The rank keeping ``fraction`` (0, 1] of each mode's full rank, ``max(1, round(fraction * max))`` per mode."""
    if not 0 < fraction <= 1:
        raise RankscopeError(f"rank fraction {fraction!r} must be in (0, 1]")
    return as_rank(method, [max(1, round(fraction * top)) for top in max_ranks(method, module)])


def resolve_rank(method: Method, module: nn.Module, value: object) -> Rank:
    """An int (or ints) is a rank; a float in (0, 1) is a fraction of the full rank (tensorly's convention).

    Raises
    ------
    RankscopeError
        A float outside (0, 1), or a rank that does not fit the layer.
    """
    if isinstance(value, float):
        if not 0 < value < 1:
            raise RankscopeError(f"a fractional rank must be in (0, 1), got {value!r}; give an integer for an exact rank")
        return rank_at(method, module, value)
    return check_rank(method, module, value)


def round_rank(method: Method, module: nn.Module, rank: Rank, multiple: int) -> Rank:
    """``rank`` with each mode rounded to the nearest multiple of ``multiple`` (ties down), within ``[multiple, full]``.

    A mode whose full rank is below ``multiple`` is left as it is, as is every mode for ``multiple == 1``.
    CPU kernels (oneDNN's blocked layouts, ONNX Runtime's NCHWc) process channels in blocks of 8 or 16,
    so a rank of 60 costs about what 64 does; rounding spends those channels or saves them.

    Raises
    ------
    RankscopeError
        ``multiple < 1``.
    """
    if multiple < 1:
        raise RankscopeError(f"a rank multiple must be at least 1, got {multiple}")
    values = []
    for value, top in zip(rank_values(rank), max_ranks(method, module)):
        if top < multiple:
            values.append(value)
            continue
        blocks, rest = divmod(value, multiple)
        values.append(min(max(multiple, (blocks + (2 * rest > multiple)) * multiple), top))
    return as_rank(method, values)


def rank_grid(method: Method, module: nn.Module, points: int = 10, multiple: int = 1) -> list[Rank]:
    """Up to ``points`` distinct ranks spread from 1 to full rank along the largest mode, each rounded to
    ``multiple`` (:func:`round_rank`; fewer ranks when rounding makes some equal)."""
    steps = max(max_ranks(method, module))
    fractions = np.unique(np.linspace(1, steps, num=min(points, steps)).round().astype(int)) / steps
    ranks: list[Rank] = []
    for f in fractions:
        rank = round_rank(method, module, rank_at(method, module, float(f)), multiple)
        if rank not in ranks:
            ranks.append(rank)
    return ranks


def rank_fraction(method: Method, module: nn.Module, rank: Rank) -> float:
    """The largest share of a mode's full rank that ``rank`` keeps (1.0 at full rank)."""
    return max(v / t for v, t in zip(rank_values(rank), max_ranks(method, module)))

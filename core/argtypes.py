"""Argument types shared by the ``rankscope`` command and its ``bench`` sub-commands.

Each is an ``argparse`` ``type=``: it parses the text of one option and raises
``argparse.ArgumentTypeError`` (argparse prints it as a usage error) when the value does not fit.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Callable


def positive(kind: str, least: int = 1) -> Callable[[str], int]:
    """A parser of integers of at least ``least`` (1 by default).

    Parameters
    ----------
    kind : how the messages name the value, e.g. ``"--samples"``.
    least : the smallest value accepted.

    Returns
    -------
    Callable[[str], int]
        Parses ``text`` as an ``int``; ``argparse.ArgumentTypeError`` when it is not an integer or is below ``least``.
    """
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{kind} must be an integer, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"{kind} must be at least {least}, got {value}")
        return value

    return parse


def threads(text: str) -> int:
    """``--threads``: a positive integer no larger than this machine's CPU cores.

    Raises
    ------
    argparse.ArgumentTypeError
        Not an integer, below 1, or more than ``os.cpu_count()``.
    """
    value = positive("--threads")(text)
    cores = os.cpu_count() or 1
    if value > cores:
        raise argparse.ArgumentTypeError(f"--threads {value} is larger than this machine's {cores} cores")
    return value


def _bounded(flag: str, noun: str, within: Callable[[float], bool], span: str, shown: Callable[[float], str]) -> Callable[[str], float]:
    """A parser of floats for which ``within`` holds; its messages say ``flag`` must be ``noun``, and in ``span``."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be {noun}, got {text!r}") from None
        if not within(value):
            raise argparse.ArgumentTypeError(f"{flag} must be in {span}, got {shown(value)}")
        return value

    return parse


def fraction(flag: str) -> Callable[[str], float]:
    """A parser of numbers in (0, 1].

    Parameters
    ----------
    flag : the option the messages name, e.g. ``"--energy"``.

    Returns
    -------
    Callable[[str], float]
        Parses ``text`` as a ``float``; ``argparse.ArgumentTypeError`` when it is not a number or is outside (0, 1].
    """
    return _bounded(flag, "a number", lambda v: 0 < v <= 1, "(0, 1]", str)


def points(flag: str) -> Callable[[str], float]:
    """A parser of percentage points in (0, 100), e.g. ``--ci 2`` for ±2 points.

    Returns
    -------
    Callable[[str], float]
        Parses ``text`` as a ``float``; ``argparse.ArgumentTypeError`` when it is not a number or is outside (0, 100).
    """
    return _bounded(flag, "a number of points", lambda v: 0 < v < 100, "(0, 100) points", lambda v: f"{v:g}")

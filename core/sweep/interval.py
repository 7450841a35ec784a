"""How many samples a sweep scores each point on for a stated confidence interval on its headline metric.

A sweep point's headline under classification (top-1) or fidelity (agreement with the dense model) is a share of
the evaluated samples, each counted 0 or 1: an estimate of a proportion ``p`` from ``n`` independent samples. Its
normal-approximation interval at confidence ``c`` has half-width ``z_c * sqrt(p (1 - p) / n)``, ``z_c`` the
standard normal's two-sided quantile; at ``p = 1/2``, the worst case, that is the bound every point of a sweep
meets whatever its accuracy. :func:`samples_for` inverts it: the fewest samples whose worst-case interval is no
wider than asked. ``rankscope sweep --ci`` and ``rankscope allocate --ci`` size their calibration subset so.

It says how far apart two points' scores must be before a sweep can tell them apart: 1,000 samples give
±3.1 points at 95 %, 10,000 give ±0.98. (The difference between two points scored on the same samples varies
less, by how often they disagree; this bound does not use that.)

:class:`EarlyStop` stops scoring a point before its last batch once, at the stated confidence, its headline lies more
than ``drop`` below the dense model's on the same samples: the point is then out of any plan that accepts at most
that drop from one layer, and the rest of its batches cannot bring it back. The drop per sample (dense right, point
wrong: 1; the reverse: -1; else 0) varies by at most 1, so ``n`` samples put the mean drop within ``z / sqrt(n)``.
It is checked after each batch but the last, each check at ``1 - (1 - confidence) / checks`` (Bonferroni over the
looks), so the chance that a point is stopped although its drop on all the data is within ``drop`` stays below
``1 - confidence``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from core.errors import RankscopeError
from core.task import Metric, Scores, Task

CONFIDENCE = 0.95


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise RankscopeError(f"confidence must be in (0, 1), got {confidence!r}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def half_width(samples: int, confidence: float = CONFIDENCE, rate: float = 0.5) -> float:
    """Half-width of the ``confidence`` interval of a proportion ``rate`` estimated from ``samples`` samples.

    Raises
    ------
    RankscopeError
        ``samples`` below 1, ``rate`` outside [0, 1], ``confidence`` outside (0, 1).
    """
    if samples < 1 or not 0 <= rate <= 1:
        raise RankscopeError(f"samples must be at least 1 and rate in [0, 1], got {samples!r} and {rate!r}")
    return _z(confidence) * math.sqrt(rate * (1 - rate) / samples)


def samples_for(width: float, confidence: float = CONFIDENCE, rate: float = 0.5) -> int:
    """The fewest samples whose :func:`half_width` at ``confidence`` and ``rate`` is at most ``width`` (a fraction:
    0.02 for ±2 points).

    Raises
    ------
    RankscopeError
        ``width`` outside (0, 1), ``confidence`` outside (0, 1).
    """
    if not 0 < width < 1:
        raise RankscopeError(f"the interval's half-width must be a fraction in (0, 1), got {width!r}")
    n = max(1, math.ceil((_z(confidence) / width) ** 2 * rate * (1 - rate)))
    while half_width(n, confidence, rate) > width:  # the ceiling of a rounded float may be one off either way
        n += 1
    while n > 1 and half_width(n - 1, confidence, rate) <= width:
        n -= 1
    return n


def check_proportion(task: Task) -> Metric:
    """``task``'s headline metric; a one-line :class:`~core.errors.RankscopeError` unless it is a share of the samples."""
    headline = next(m for m in task.metrics if m.name == task.headline)
    if not headline.fraction:
        raise RankscopeError(f"an interval on the samples needs a headline that is a share of them; the {task.name} "
                             f"task's {headline.title} is not: give --samples")
    return headline


@dataclass(frozen=True)
class EarlyStop:
    """Stop scoring a sweep point once its headline is, at ``confidence``, more than ``drop`` below the dense model's.

    Parameters
    ----------
    drop : the largest drop of the headline (a fraction: 0.05 for 5 points) a plan would accept from one layer.
    confidence : of the whole sequence of checks on one point (see the module docstring).
    """

    drop: float
    confidence: float = CONFIDENCE

    def __post_init__(self) -> None:
        if not 0 < self.drop < 1:
            raise RankscopeError(f"the early stop's drop must be a fraction in (0, 1), got {self.drop!r}")
        _z(self.confidence)

    def decided(self, scores: Scores, dense: float, checks: int) -> bool:
        """Whether ``scores`` (of the batches seen so far) put the point more than ``drop`` below ``dense``, the dense
        model's headline on the same samples, at this stop's confidence spread over ``checks`` looks."""
        z = _z(1 - (1 - self.confidence) / max(1, checks))
        gap = dense - scores.score if scores.higher_is_better else scores.score - dense
        return gap - z / math.sqrt(scores.samples) > self.drop

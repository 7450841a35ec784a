"""A named quality measure of model outputs and which way is better."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One number a task reports.

    Attributes
    ----------
    name : key of the number in a tally's :meth:`result` dict, e.g. ``"top1"``.
    higher_is_better : ``True`` when a larger value means a better model (accuracy), ``False`` for errors.
    description : one sentence for tables and tooltips: what is measured and in what unit.
    """

    name: str
    higher_is_better: bool
    description: str

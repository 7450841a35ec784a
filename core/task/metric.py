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
    fraction : the value is a fraction of the samples, shown as a percentage.
    label : how pages and reports name it (default: ``name``).
    """

    name: str
    higher_is_better: bool
    description: str
    fraction: bool = False
    label: str = ""

    def show(self, value: float) -> str:
        """``value`` as reports print it: ``93.17 %`` for fractions, four decimals otherwise."""
        return f"{100 * value:.2f} %" if self.fraction else f"{value:.4f}"

    @property
    def title(self) -> str:
        """:attr:`label`, else :attr:`name`."""
        return self.label or self.name

"""The result of scoring a model on a data set under a task: every metric, the loss and the headline."""
from __future__ import annotations

from dataclasses import dataclass, field

from core.task.base import Tally, Task
from core.task.registry import get_task


@dataclass(frozen=True)
class Scores:
    """A task's metrics over ``samples`` examples.

    Attributes
    ----------
    task : the task's name (``"classification"``, ``"fidelity"``, ...).
    values : every metric the task reported, by name (a metric the data cannot give, e.g. ``top5`` with
        5 classes or fewer, is absent).
    headline : the name of the metric to show first.
    higher_is_better : the headline's direction.
    loss : the task's loss, the mean over the samples (what sweeps, allocators and recovery minimise).
    samples : number of examples scored.
    """

    task: str
    values: dict[str, float] = field(hash=False)
    headline: str
    higher_is_better: bool
    loss: float
    samples: int

    def __getitem__(self, name: str) -> float:
        return self.values[name]

    def get(self, name: str) -> float | None:
        """The metric ``name``, or ``None`` where the task did not report it."""
        return self.values.get(name)

    @property
    def score(self) -> float:
        """The headline metric's value."""
        return self.values[self.headline]

    def text(self) -> str:
        """``top-1 93.17 %  loss 0.2011``: the headline as its metric shows it, then the loss."""
        metric = next(m for m in get_task(self.task).metrics if m.name == self.headline)
        return f"{metric.title} {metric.show(self.score)}  loss {self.loss:.4f}"


def scores_of(task: Task, tally: Tally) -> Scores:
    """The :class:`Scores` of everything ``tally`` (one of ``task``'s) has counted."""
    values = tally.result()
    direction = next(m.higher_is_better for m in task.metrics if m.name == task.headline)
    return Scores(task.name, values, task.headline, direction, values[task.loss_metric], tally.seen)

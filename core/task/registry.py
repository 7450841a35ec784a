"""Tasks by name: ``get_task("classification")``, ``list_tasks()``, and :func:`register_task` for new ones.

Registered: ``classification``, ``fidelity``, for each scale of :data:`core.task.super_resolution.SCALES`
``super-resolution-x<scale>`` and ``super-resolution-fidelity-x<scale>``, and ``language-modelling`` and
``language-fidelity`` (:mod:`core.task.language`).
"""
from __future__ import annotations

from core.errors import RankscopeError, close_matches_hint
from core.task.base import Task
from core.task.classification import ClassificationTask
from core.task.fidelity import FidelityTask
from core.task.language import LanguageFidelityTask, LanguageModellingTask
from core.task.super_resolution import SCALES, SuperResolutionFidelityTask, SuperResolutionTask

_TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Make ``task`` available under ``task.name`` and return it.

    Raises
    ------
    ValueError
        ``task.headline`` is not one of its metrics, or the name is taken.
    """
    if task.headline not in {m.name for m in task.metrics}:
        raise ValueError(f"task {task.name}: headline {task.headline!r} is not one of its metrics")
    if task.name in _TASKS:
        raise ValueError(f"task {task.name!r} is already registered")
    _TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    """The task registered as ``name``.

    Raises
    ------
    RankscopeError
        Unknown name (with close matches).
    """
    if name not in _TASKS:
        known = list_tasks()
        raise RankscopeError(f"unknown task {name!r}" + close_matches_hint(name, known) + f"; known: {', '.join(known)}")
    return _TASKS[name]


def list_tasks() -> list[str]:
    """Names of the registered tasks, sorted."""
    return sorted(_TASKS)


register_task(ClassificationTask())
register_task(FidelityTask())
for _scale in SCALES:
    register_task(SuperResolutionTask(_scale))
    register_task(SuperResolutionFidelityTask(_scale))
register_task(LanguageModellingTask())
register_task(LanguageFidelityTask())

"""Tasks by name: the registered ones, their metrics and headline, unknown names, duplicates."""
from __future__ import annotations

import pytest

from core.errors import RankscopeError
from core.task import ClassificationTask, Metric, get_task, list_tasks, register_task


def test_registered_tasks_and_their_metrics():
    sr = [f"super-resolution{kind}-x{scale}" for scale in (2, 3, 4) for kind in ("", "-fidelity")]
    lm = ["language-modelling", "language-fidelity"]  # tests/task/test_language.py
    assert list_tasks() == sorted(["classification", "fidelity", *sr, *lm])  # super-resolution: tests/task/test_super_resolution_task.py
    classification, fidelity = get_task("classification"), get_task("fidelity")
    assert [m.name for m in classification.metrics] == ["top1", "top5", "loss"]
    assert [m.name for m in fidelity.metrics] == ["agreement", "top5_overlap", "kl", "relative_error"]
    assert [m.higher_is_better for m in fidelity.metrics] == [True, True, False, False]
    assert (classification.headline, fidelity.headline) == ("top1", "agreement")
    assert (classification.needs_labels, classification.needs_reference) == (True, False)
    assert (fidelity.needs_labels, fidelity.needs_reference) == (False, True)


def test_unknown_task_says_what_is_known():
    with pytest.raises(RankscopeError, match="unknown task 'clasification'.*did you mean: classification"):
        get_task("clasification")


def test_a_task_is_registered_once_with_a_headline_among_its_metrics():
    with pytest.raises(ValueError, match="already registered"):
        register_task(ClassificationTask())

    class NoHeadline(ClassificationTask):
        name = "no-headline"
        metrics = (Metric("psnr", True, "peak signal-to-noise ratio, in dB"),)

    with pytest.raises(ValueError, match="headline 'top1'"):
        register_task(NoHeadline())
    assert "no-headline" not in list_tasks()

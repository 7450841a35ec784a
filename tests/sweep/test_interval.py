"""The sample size a stated interval on a sweep's headline needs, and the interval a sample size gives."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import RankscopeError
from core.sweep.interval import check_proportion, half_width, samples_for
from core.task import ClassificationTask, LanguageModellingTask


def test_the_textbook_sizes():
    assert samples_for(0.05) == 385  # ±5 points at 95 %: the survey statistician's 385
    assert samples_for(0.01) == 9604
    assert samples_for(0.03, 0.99) == 1844
    assert half_width(1000) == pytest.approx(0.03099, abs=1e-5)


@settings(max_examples=200, deadline=None)
@given(width=st.floats(0.002, 0.5), confidence=st.floats(0.5, 0.999), rate=st.floats(0.01, 0.5))
def test_samples_for_is_the_fewest_that_meet_the_width(width, confidence, rate):
    n = samples_for(width, confidence, rate)
    assert half_width(n, confidence, rate) <= width
    assert n == 1 or half_width(n - 1, confidence, rate) > width


def test_the_interval_covers_as_often_as_it_says():
    n = samples_for(0.05)
    rng = np.random.default_rng(0)
    estimates = rng.binomial(n, 0.5, size=20_000) / n  # 20,000 sweeps of a point whose true top-1 is 50 %
    covered = float(np.mean(np.abs(estimates - 0.5) <= half_width(n)))
    assert 0.94 < covered < 0.96


def test_only_a_share_of_the_samples_takes_an_interval():
    assert check_proportion(ClassificationTask()).name == "top1"
    with pytest.raises(RankscopeError, match="perplexity is not: give --samples"):
        check_proportion(LanguageModellingTask())


@pytest.mark.parametrize(("call", "message"), [
    (lambda: samples_for(0.0), "half-width must be a fraction in"),
    (lambda: samples_for(0.02, 1.0), "confidence must be in"),
    (lambda: half_width(0), "samples must be at least 1"),
])
def test_bad_arguments_are_one_line_errors(call, message):
    with pytest.raises(RankscopeError, match=message):
        call()

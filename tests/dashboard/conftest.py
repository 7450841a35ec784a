"""Shared pieces of the dashboard tests: the app's path, small evaluation subsets, metric reading."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
SAMPLES = 200  # evaluation images in the page tests (the app's default is core.layer_eval.INTERACTIVE_SAMPLES)


def metrics(at: AppTest) -> dict[str, str]:
    """Label -> shown value of every ``st.metric`` on the page."""
    return {m.label: m.value for m in at.metric}


def deltas(at: AppTest) -> dict[str, str]:
    """Label -> shown delta of every ``st.metric`` on the page."""
    return {m.label: m.delta for m in at.metric}


@pytest.fixture
def page():
    """Open a page of the app (``"pages/plan.py"``) on the small evaluation subset, run and checked for exceptions."""

    def open_page(path: str, **session) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=240)
        at.session_state["samples"] = SAMPLES
        for key, value in session.items():
            at.session_state[key] = value
        at.switch_page(path).run()
        assert not at.exception, at.exception
        return at

    return open_page

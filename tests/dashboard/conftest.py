"""The dashboard tests' fixture: a page of the app opened headless with Streamlit's AppTest."""
from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.dashboard.helpers import APP, SAMPLES


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

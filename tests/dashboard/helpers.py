"""What the dashboard tests share besides fixtures: the app's path, the evaluation subset size, metric reading.

Imported as ``tests.dashboard.helpers`` (tests is a package tree), never from "conftest": every test
folder has one, and a bare "conftest" would find whichever folder's was imported first.
"""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
SAMPLES = 200  # evaluation images in the page tests (the app's default is core.evaluate.cached.INTERACTIVE_SAMPLES)


def metrics(at: AppTest) -> dict[str, str]:
    """Label -> shown value of every ``st.metric`` on the page."""
    return {m.label: m.value for m in at.metric}


def deltas(at: AppTest) -> dict[str, str]:
    """Label -> shown delta of every ``st.metric`` on the page."""
    return {m.label: m.delta for m in at.metric}

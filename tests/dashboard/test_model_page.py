"""The Model page, run headless with Streamlit's AppTest: real numbers, and errors on the page."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_model_page_shows_the_measured_profile():
    at = AppTest.from_file(APP, default_timeout=180).run()
    assert not at.exception
    metrics = _metrics(at)
    assert metrics["Parameters"] == "77.75 k"
    assert metrics["FLOPs / image"].endswith(" M")
    assert metrics["Top-1 accuracy"].endswith(" %") and metrics["Latency (median)"].endswith(" ms")
    at.number_input[0].set_value(500).run()
    assert not at.exception


def test_bad_model_name_is_a_message_not_a_traceback():
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.text_input[0].set_value("timm:not_a_model").run()
    assert not at.exception
    assert "unknown timm model" in at.error[0].value

"""The Model page, run headless with Streamlit's AppTest: real numbers, uploads, and errors on the page."""
from __future__ import annotations

import io

import pytest
import torch
from safetensors.torch import save

from core.models import create_model

from tests.dashboard.helpers import SAMPLES, metrics

pytestmark = pytest.mark.slow  # a Streamlit AppTest page: evaluates a model per run


def test_model_page_shows_the_measured_profile(page):
    at = page("pages/model.py")
    shown = metrics(at)
    assert shown["Parameters"] == "77.75 k"
    assert shown["FLOPs / sample"] == "18.69 M"
    assert shown["Top-1"].endswith(" %") and shown["Latency (median)"].endswith(" ms")
    assert at.session_state["samples"] == SAMPLES
    at.number_input[0].set_value(300).run()
    assert not at.exception
    assert at.session_state["samples"] == 300
    at.selectbox(key="_w_shipped").set_value("fmnist-vit").run()
    assert not at.exception
    assert at.session_state["model"] == "fmnist-vit"
    assert metrics(at)["Parameters"] != shown["Parameters"]


def test_bad_model_name_is_a_message_not_a_traceback(page):
    at = page("pages/model.py")
    at.text_input[0].set_value("timm:not_a_model").run()
    assert not at.exception
    assert "unknown timm model" in at.error[0].value
    assert at.session_state["model"] == "fmnist-resnet"  # the other pages keep working on the last good model


@pytest.fixture
def uploads(tmp_path, monkeypatch):
    monkeypatch.setenv("RANKSCOPE_UPLOADS", str(tmp_path))
    return tmp_path


def test_uploaded_checkpoint_becomes_the_model(page, uploads):
    model, _ = create_model("fmnist-resnet")
    with torch.no_grad():
        model.fc.bias.add_(1.0)  # different weights from the shipped ones
    at = page("pages/model.py")
    at.file_uploader[0].upload("mine.safetensors", save(model.state_dict()))
    at.run()
    assert not at.exception
    assert "Give the architecture" in at.info[0].value
    at.text_input(key="_w_upload_arch").set_value("fmnist-resnet").run()
    assert not at.exception, at.exception
    assert at.session_state["model"].startswith(f"file:{uploads}") and at.session_state["arch"] == "fmnist-resnet"
    assert metrics(at)["Parameters"] == "77.75 k"


def test_bad_uploads_are_messages(page, uploads):
    at = page("pages/model.py")
    at.file_uploader[0].upload("notes.pt", b"not a checkpoint at all")
    at.run()
    at.text_input(key="_w_upload_arch").set_value("fmnist-resnet").run()
    assert not at.exception
    assert "refused to load" in at.error[0].value  # garbage is not unpickled
    buffer = io.BytesIO()
    torch.save({"fc.weight": torch.zeros(3, 3)}, buffer)
    at.file_uploader[0].set_value(("small.pt", buffer.getvalue(), "application/octet-stream")).run()
    assert not at.exception
    assert "does not fit the architecture" in at.error[0].value

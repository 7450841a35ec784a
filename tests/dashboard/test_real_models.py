"""A real model on the pages: the pretrained imagenet-mobilenetv2 scored on its labelled photos by its task's metrics
and by fidelity to the dense model, and on unlabelled photos by fidelity alone."""
from __future__ import annotations

import pytest

from core.data import eval_subset, load_dataset
from core.models import create_model
from core.profile import evaluate
from dashboard.format import percent

from tests.dashboard.helpers import deltas, metrics

pytestmark = pytest.mark.slow  # a Streamlit AppTest page: evaluates a 224x224 model per run

SMALL = 8  # evaluation images of the 20 imagenet-samples
MOBILENET = dict(samples=SMALL, shipped="imagenet-mobilenetv2", model="imagenet-mobilenetv2")


def test_pretrained_mobilenet_shows_its_task_metrics_and_fidelity(page):
    at = page("pages/model.py", **MOBILENET)
    assert at.session_state["model"] == "imagenet-mobilenetv2"
    assert at.subheader[0].value == "Baseline: imagenet-mobilenetv2"
    model, cfg = create_model("imagenet-mobilenetv2")
    expected = evaluate(model, eval_subset(load_dataset("imagenet-samples", cfg), SMALL))
    shown = metrics(at)
    assert shown["Parameters"] == "3.50 M"
    assert shown["Top-1"] == percent(expected["top1"]) and shown["Top-5"] == percent(expected["top5"])
    assert shown["Loss"] == f"{expected.loss:.4f}"

    at.switch_page("pages/plan.py").run()
    assert not at.exception, at.exception
    shown, moved = metrics(at), deltas(at)
    assert shown["Top-1"].endswith(" %") and moved["Top-1"].endswith(" pp")  # against the dense model's
    assert shown["Top-1 agreement"].endswith(" %") and moved["Top-1 agreement"].endswith(" pp")  # fidelity, labels unused
    assert "Loss" in shown
    assert at.session_state["history"][-1].keys() >= {"top1", "agreement"}


def test_unlabelled_photos_are_scored_by_fidelity_alone(page):
    at = page("pages/model.py", **MOBILENET, data="photos:16")
    assert at.info[0].value.startswith("photos:16 has no labels: ")
    assert "Top-1" not in metrics(at)  # no labels: nothing to score the baseline against but itself
    at.switch_page("pages/plan.py").run()
    assert not at.exception, at.exception
    shown = metrics(at)
    assert shown["Top-1 agreement"].endswith(" %") and "Top-1" not in shown
    assert "Loss" in shown  # the fidelity task's loss, the KL


def test_gradient_pruning_is_not_offered_on_unlabelled_calibration_photos(page):
    at = page("pages/density.py", **MOBILENET)  # imagenet-samples calibrates on the (unlabelled) photos
    assert at.selectbox(key="_w_sd_method").options == ["resample", "prune: l1", "prune: lamp"]
    assert metrics(at)["Top-1 agreement (no fine-tune)"] == "100.00 %"  # every group at density 1: the dense model

"""The Export page: the plan shown for download applies; imported plans are validated with every problem inline."""
from __future__ import annotations

import pytest

from core.models import create_model
from core.plan import LayerEntry, Plan, apply_plan, loads_plan

from tests.dashboard.helpers import metrics

pytestmark = pytest.mark.slow  # a Streamlit AppTest page: evaluates a model per run


def test_the_exported_plan_loads_and_applies(page):
    at = page("pages/export.py")
    labels = [b.proto.label for b in at.download_button]
    assert labels == ["Plan as YAML", "Plan as JSON", "Compressed model (.zip)"]
    plan = loads_plan(at.code[0].value)
    model, _ = create_model("fmnist-resnet")
    compressed, report = apply_plan(model, plan)  # weights_hash matches: no force needed
    assert len(report.applied) == len(plan.layers) == 10


def test_import_replaces_the_plan_or_lists_its_problems(page):
    at = page("pages/export.py")
    good = Plan("fmnist-resnet", {"fc": LayerEntry("svd", 3), "layer3.0.conv2": LayerEntry("tucker2", [8, 8])})
    at.file_uploader[0].upload("mine.yaml", good.dumps("yaml").encode())
    at.run()
    assert not at.exception
    assert at.success[0].value.startswith("Loaded 2 layer(s) and 0 channel group(s) from mine.yaml")
    assert loads_plan(at.code[0].value).layers == good.layers

    bad = "schema: 1\nmodel: fmnist-resnet\nlayers:\n  fc: {method: svd, rank: 99}\n  nope: {method: tucker2, ranks: [2, 2]}\n  stem.1: {method: svd, rank: 2}\n"
    at.file_uploader[0].set_value(("bad.yaml", bad.encode(), "application/x-yaml")).run()
    assert not at.exception
    message = at.error[0].value
    assert "fc: rank out of range (99 not in 1..10)" in message
    assert "nope: no such module in the model" in message
    assert "stem.1: svd does not apply" in message
    assert loads_plan(at.code[0].value).layers == good.layers  # the plan under edit is unchanged

    at.file_uploader[0].set_value(("broken.json", b"{not json", "application/json")).run()
    assert "not valid YAML/JSON" in at.error[0].value

    at.switch_page("pages/plan.py").run()
    assert not at.exception
    assert metrics(at)["Parameters"] != ""
    assert {k for k, e in at.session_state["plan_entries"].items() if e["method"]} == {"fc", "layer3.0.conv2"}

"""The Layer explorer page: moving a rank slider changes the shown costs and accuracy to what core computes."""
from __future__ import annotations

import pytest

from core.data import eval_subset, load_dataset
from core.decompose import get_method
from core.evaluate.cached import LayerEvaluator
from core.models import create_model
from core.plan import LayerEntry
from core.plan.cost import entry_cost, layer_sites
from core.profile import example_input
from dashboard.format import human, percent

from tests.dashboard.helpers import SAMPLES, deltas, metrics

pytestmark = pytest.mark.slow  # a Streamlit AppTest page: evaluates a model per run

PATH = "layer3.0.conv2"  # the largest FLOP share of fmnist-resnet (tied): the page opens on it


@pytest.fixture(scope="module")
def resnet():
    model, cfg = create_model("fmnist-resnet")
    evaluator = LayerEvaluator(model, eval_subset(load_dataset("fashion-mnist", cfg), SAMPLES))
    return model, layer_sites(model, example_input(cfg, 1), [PATH])[PATH], evaluator


def _expected(resnet, method: str, rank) -> tuple[str, str, str]:
    model, site, evaluator = resnet
    module = model.get_submodule(PATH)
    cost = entry_cost(module, LayerEntry(method, rank), site)
    accuracy = evaluator.evaluate({PATH: get_method(method).build(module, rank)})["top1"]
    return human(cost.params), human(cost.flops), percent(accuracy)


def _shown(at) -> tuple[str, str, str]:
    shown = metrics(at)
    return shown["Layer parameters"], shown["Layer FLOPs / sample"], shown["Model top-1 (only this layer changed)"]


def test_rank_slider_drives_costs_and_accuracy(page, resnet):
    at = page("pages/layer_explorer.py", lx_layer=PATH)
    assert at.selectbox(key="_w_lx_layer").value == PATH
    assert at.selectbox(key=f"_w_lx_method_{PATH}").value == "tucker2"
    assert _shown(at) == _expected(resnet, "tucker2", (32, 32))
    assert deltas(at)["Layer parameters"].endswith("% of dense layer")

    at.slider(key=f"_w_lx_rank_{PATH}_tucker2_0").set_value(4).run()
    assert not at.exception
    assert _shown(at) == _expected(resnet, "tucker2", (4, 32))
    assert at.subheader[0].value == f"{PATH} with tucker2 at rank 4x32"

    at.selectbox(key=f"_w_lx_method_{PATH}").set_value("svd").run()
    assert not at.exception
    at.slider(key=f"_w_lx_rank_{PATH}_svd_0").set_value(10).run()
    assert _shown(at) == _expected(resnet, "svd", 10)
    charts = at.get("plotly_chart")
    assert len(charts) == 2  # spectrum and error curve
    assert "Spectrum" in charts[0].proto.spec and "Reconstruction error" in charts[1].proto.spec

    at.button[0].click().run()  # "Put this layer's choice into the plan"
    assert at.session_state["plan_entries"][PATH] == {"method": "svd", "rank": 10, "density": None, "options": {}, "variant": None}


def test_other_layers_and_methods(page):
    at = page("pages/layer_explorer.py", lx_layer="fc")
    assert not at.exception
    assert at.selectbox(key="_w_lx_method_fc").options == ["svd", "aa_svd"]
    at.selectbox(key="_w_lx_method_fc").set_value("aa_svd").run()  # data-aware: calibrated on training images
    assert not at.exception, at.exception
    assert metrics(at)["Layer parameters"] == human(5 * (64 + 10) + 10)  # rank 5 of 10: two thin Linears and the bias
    assert "layer(s) no method applies to" in at.expander[0].label

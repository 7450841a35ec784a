"""The Sampling density page on fmnist-resnet: densities with capacity estimates, the narrowed model, the plan."""
from __future__ import annotations

import pytest

from core.models import create_model
from core.plan import LayerEntry, Plan, apply_plan
from core.profile import count_params, example_input
from core.resample import capacity

from tests.dashboard.helpers import metrics

pytestmark = pytest.mark.slow  # a Streamlit AppTest page: evaluates a model per run


def test_density_for_every_group_builds_counts_and_exports_the_narrowed_model(page):
    at = page("pages/density.py")
    model, cfg = create_model("fmnist-resnet")
    groups = capacity(model, example_input(cfg, 1))
    assert len(at.slider) == 2 + len(groups)  # the sidebar's energy, "every group", one per group
    assert metrics(at)["Parameters"] == "77.75 k"  # every group at density 1: nothing narrowed
    at.slider(key="_w_sd_all").set_value(0.5).run()
    assert not at.exception
    plan = Plan("fmnist-resnet", groups={g: LayerEntry("resample", density=0.5) for g in groups["group"]})
    narrowed, _ = apply_plan(model, plan, example=example_input(cfg, 1))
    assert metrics(at)["Parameters"] == f"{count_params(narrowed) / 1e3:.2f} k"
    first = groups.iloc[0]
    assert f"capacity estimate {first.recommended_density:.2f}" in at.slider(key=f"_w_sd_density_{first.group}").label
    next(b for b in at.button if b.label == "Put these densities into the plan").click().run()
    assert not at.exception
    assert set(at.session_state["plan_groups"]) == set(groups["group"])
    assert at.session_state["plan_groups"][first.group]["density"] == 0.5


def test_pruning_is_compared_with_resampling_at_the_same_densities(page):
    at = page("pages/density.py")
    at.slider(key="_w_sd_all").set_value(0.7).run()
    at.selectbox(key="_w_sd_method").set_value("prune: l1").run()
    assert not at.exception
    compare = next(b for b in at.button if b.label == "Compare every way")
    compare.click().run()
    assert not at.exception
    table = at.dataframe[0].value
    assert table["how"].tolist() == ["resample", "prune: l1", "prune: taylor", "prune: hessian", "prune: lamp"]
    assert table["top1"].between(0, 1).all() and (table["params"] < 77754).all()

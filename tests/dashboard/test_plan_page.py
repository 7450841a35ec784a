"""The Plan page: the scale slider, table edits and auto-fill move the plan and totals to what core computes; history and restore."""
from __future__ import annotations

import pytest

from core.data import eval_subset, load_dataset
from core.decompose import get_method
from core.layers.study import default_method
from core.decompose.rank import rank_at, rank_text
from core.models import create_model
from core.plan import LayerEntry, Plan, apply_plan
from core.plan.cost import layer_sites, plan_cost
from core.profile import count_flops, count_params, evaluate, example_input
from core.sweep import Problem, Target, allocate
from dashboard.format import human, percent

from tests.dashboard.helpers import SAMPLES, deltas, metrics

pytestmark = pytest.mark.slow  # a Streamlit AppTest page: evaluates a model per run


@pytest.fixture(scope="module")
def resnet():
    model, cfg = create_model("fmnist-resnet")
    return model, cfg, eval_subset(load_dataset("fashion-mnist", cfg), SAMPLES)


def _plan_at(model, fraction: float, dense: tuple[str, ...] = ()) -> Plan:
    """The page's plan: each compressible layer's default method at ``fraction`` of its full rank."""
    layers = {}
    for path, module in model.named_modules():
        method = default_method(module) if path else None
        if method and path not in dense:
            rank = rank_at(get_method(method), module, fraction)
            layers[path] = LayerEntry(method, list(rank) if isinstance(rank, tuple) else rank)
    return Plan("fmnist-resnet", layers)


def _expected(resnet, plan: Plan) -> tuple[str, str, str]:
    model, cfg, dataset = resnet
    x = example_input(cfg, 1)
    cost = plan_cost(model, plan, layer_sites(model, x, list(plan.layers)), count_params(model), int(count_flops(model, x).per_sample))
    compressed, _ = apply_plan(model, plan)
    return human(cost.params), human(cost.flops), percent(evaluate(compressed, dataset)["top1"])


def _shown(at) -> tuple[str, str, str]:
    shown = metrics(at)
    return shown["Parameters"], shown["FLOPs / sample"], shown["Top-1"]


def test_scale_slider_and_table_edits_drive_the_totals(page, resnet):
    at = page("pages/plan.py")
    assert _shown(at) == _expected(resnet, _plan_at(resnet[0], 0.5))

    at.slider(key="_w_plan_scale").set_value(75).run()
    assert not at.exception
    assert _shown(at) == _expected(resnet, _plan_at(resnet[0], 0.75))

    editor = f"plan_editor_{at.session_state['plan_version']}"
    rows = list(at.data_editor[0].value["layer"])
    edits = {rows.index("stem.0"): {"method": "—"}, rows.index("layer1.0.conv1"): {"rank": "2x"},
             rows.index("fc"): {"method": "tucker2"}}  # a method that does not fit a Linear
    at.session_state[editor] = {"edited_rows": edits, "added_rows": [], "deleted_rows": []}
    at.run()
    assert not at.exception
    assert [e.value.split(" (")[0] for e in at.error] == [
        "layer1.0.conv1: tucker2 takes 2 ranks, got 1 — this layer stays dense until fixed",
        "fc: tucker2 does not apply"]
    assert _shown(at) == _expected(resnet, _plan_at(resnet[0], 0.75, dense=("fc", "layer1.0.conv1", "stem.0")))
    assert len(at.get("plotly_chart")) == 3  # totals, per-layer costs, accuracy vs FLOPs


def test_every_configuration_is_kept_and_can_be_restored(page, resnet):
    at = page("pages/plan.py")
    first = _shown(at)
    at.slider(key="_w_plan_scale").set_value(30).run()
    assert _shown(at) != first
    history = at.session_state["history"]
    assert [h["id"] for h in history] == [1, 2]
    restore = [s for s in at.selectbox if s.label == "Restore a configuration"][0]
    restore.set_value(1).run()
    assert not at.exception
    assert _shown(at) == first
    at.selectbox(key="plan_method").set_value("svd").run()  # one method for every layer
    assert {e["method"] for e in at.session_state["plan_entries"].values()} == {"svd"}


def test_latency_and_memory_are_measured_on_request(page):
    at = page("pages/plan.py")
    assert metrics(at)["Latency (median)"] == "—"
    [b for b in at.button if b.label == "Measure latency and peak memory"][0].click().run()
    assert not at.exception, at.exception
    shown = metrics(at)
    assert shown["Latency (median)"].endswith(" ms") and shown["Peak memory"].endswith(" MB")
    assert at.session_state["history"][-1]["latency_ms"] > 0


def test_auto_fill_puts_core_allocation_into_the_plan(page, resnet):
    at = page("pages/plan.py")
    at.slider(key="_w_auto_budget").set_value(50)
    at.selectbox(key="_w_auto_allocator").set_value("uniform").run()
    [b for b in at.button if b.label == "Fill the plan"][0].click().run()
    assert not at.exception, at.exception

    model, cfg, _ = resnet
    expected = allocate("uniform", Problem(model, "fmnist-resnet", example_input(cfg, 1), Target("flops", 0.5)))
    shown = at.data_editor[0].value.set_index("layer")
    planned = {p: (shown.loc[p, "method"], shown.loc[p, "rank"]) for p in shown.index if shown.loc[p, "method"] != "—"}
    assert planned == {p: (e.method, rank_text(e.rank)) for p, e in expected.plan.layers.items()}
    assert metrics(at)["FLOPs / sample"] == human(expected.cost)
    assert float(deltas(at)["FLOPs / sample"].split(" %")[0]) <= 50
    assert at.success[0].value.startswith("uniform, FLOPs ≤ 50 %: ") and "meets the target 0.5" in at.success[0].value
    assert at.session_state["history"][-1]["label"].endswith("(uniform, FLOPs ≤ 50 %)")


def test_flops_saved_and_time_saved_per_layer_on_request(page):
    at = page("pages/plan.py")
    at.toggle(key="plan_layer_speed").set_value(True).run()
    assert not at.exception, at.exception
    speed = next(d.value for d in at.dataframe if "saved_flops" in d.value.columns)
    planned = at.data_editor[0].value
    assert sorted(speed["name"]) == sorted(planned.loc[planned["method"] != "—", "layer"])
    assert ((speed["saved_flops"] > 0) & (speed["saved_flops"] < 1)).all() and (speed["dense_ms"] > 0).all()
    assert (speed["saved"] == 1 - speed["planned_ms"] / speed["dense_ms"]).all()


def test_whitened_fill_is_the_cli_plan_and_never_reads_the_evaluation_split(page, tmp_path, monkeypatch):
    """The Plan page's whitened allocation is ``rankscope allocate``'s plan for the same model, budget and defaults,
    post-training steps included, and choosing it touches no evaluation data."""
    import dashboard.cached.sweeps as sweeps
    from core.cli import main
    from core.plan import load_plan

    def evaluation_read(*_args, **_kwargs):
        raise AssertionError("the allocation read the evaluation split")

    at = page("pages/plan.py")
    monkeypatch.setattr(sweeps, "eval_data", evaluation_read)
    at.slider(key="_w_auto_budget").set_value(50)
    at.selectbox(key="_w_auto_allocator").set_value("whitened").run()
    [b for b in at.button if b.label == "Fill the plan"][0].click().run()
    assert not at.exception, at.exception
    assert main(["allocate", "fmnist-resnet", "--target-flops", "0.5", "--threads", "1",
                 "--out", str(tmp_path / "cli.yaml")]) == 0
    cli = load_plan(tmp_path / "cli.yaml")
    shown = at.data_editor[0].value.set_index("layer")
    planned = {p: (shown.loc[p, "method"], shown.loc[p, "rank"]) for p in shown.index if shown.loc[p, "method"] != "—"}
    assert planned == {p: (e.method, rank_text(e.rank)) for p, e in cli.layers.items()}
    assert at.session_state["plan_posttrain"] == cli.posttrain.to_dict()
    assert at.success[0].value.startswith("whitened, FLOPs ≤ 50 %: ")

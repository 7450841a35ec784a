"""The Sensitivity page: a small sweep run from the page draws exactly core's sweep table, and a second visit reads it back."""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from core.data import eval_subset, load_dataset
from core.models import create_model
from core.sweep import DENSE, sweep

from tests.dashboard.helpers import SAMPLES

pytestmark = pytest.mark.slow  # a Streamlit AppTest page: evaluates a model per run

LAYERS = ("layer3.0.conv2", "fc")  # late layers: only the network after them runs per point
POINTS = 3


def _figures(at) -> list[dict]:
    """The page's figures as Plotly JSON: the heat-map, then the curves."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _array(value) -> np.ndarray:
    """A figure's array as Plotly's JSON holds it: a list, or a typed array (``{"dtype", "bdata", "shape"}``)."""
    if isinstance(value, dict):
        shape = [int(n) for n in str(value.get("shape", -1)).split(",")]
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).reshape(shape)
    return np.asarray(value, dtype=object)


def test_a_small_sweep_is_drawn_as_core_computes_it(page, tmp_path):
    settings = dict(sweep_layers=LAYERS, sweep_points=POINTS, sweep_folder=str(tmp_path))
    at = page("pages/sensitivity.py", **settings)
    assert at.info[0].value.startswith("Not swept yet")
    [b for b in at.button if b.label == "Run exact sweep"][0].click().run()
    assert not at.exception, at.exception

    model, cfg = create_model("fmnist-resnet")
    table = sweep(model, eval_subset(load_dataset("fashion-mnist", cfg), SAMPLES), layers=list(LAYERS), points=POINTS)
    base = table.loc[table["layer"] == "", "top1"].iloc[0]
    heatmap, curves = _figures(at)
    heat = heatmap["data"][0]
    z, text, custom = _array(heat["z"]), _array(heat["text"]), _array(heat["customdata"])
    assert list(heat["y"]) == list(LAYERS)  # forward order
    for row, layer in enumerate(LAYERS):
        points = table[(table["layer"] == layer) & (table["method"] != DENSE)]
        n = len(points)
        assert list(text[row, :n]) == list(points["rank"])
        np.testing.assert_allclose(z[row, :n].astype(float), 100 * (base - points["top1"].to_numpy()))
        assert custom[row, :n, 4:6].tolist() == points[["params", "flops"]].to_numpy().tolist()
    assert [c["name"] for c in curves["data"]] == list(LAYERS)
    assert [b.proto.label for b in at.download_button] == ["Sweep table (CSV)"]

    again = page("pages/sensitivity.py", **settings)  # a new session: read from the sweep cache, nothing to run
    assert not again.info and [b for b in again.button if b.label == "Run exact sweep"][0].disabled
    assert np.array_equal(_array(_figures(again)[0]["data"][0]["z"]), z, equal_nan=True)


def test_proxy_mode_draws_the_proxy_table_and_its_agreement_with_cached_exact_points(page, tmp_path):
    settings = dict(sweep_layers=LAYERS, sweep_points=POINTS, sweep_folder=str(tmp_path))
    at = page("pages/sensitivity.py", **settings, sweep_mode="proxy", sweep_proxy="fisher")
    [b for b in at.button if b.label == "Run proxy sweep"][0].click().run()
    assert not at.exception, at.exception
    assert any("No exact points of this grid" in i.value for i in at.info)  # nothing exact cached yet
    heat = _figures(at)[0]["data"][0]
    assert list(heat["y"]) == list(LAYERS)

    exact = page("pages/sensitivity.py", **settings)  # the exact sweep fills the cache
    [b for b in exact.button if b.label == "Run exact sweep"][0].click().run()
    again = page("pages/sensitivity.py", **settings, sweep_mode="proxy", sweep_proxy="fisher")
    [b for b in again.button if b.label == "Run proxy sweep"][0].click().run()
    shown = {m.label: m.value for m in again.metric}
    assert shown["Agreement with the exact sweep"].startswith("Kendall τ ")


def test_hybrid_mode_scores_only_some_points_exactly(page, tmp_path):
    settings = dict(sweep_layers=LAYERS, sweep_points=POINTS, sweep_folder=str(tmp_path))
    at = page("pages/sensitivity.py", **settings, sweep_mode="hybrid", sweep_proxy="fisher", sweep_hybrid_flops=50)
    [b for b in at.button if b.label == "Run hybrid sweep"][0].click().run()
    assert not at.exception, at.exception
    caption = next(c.value for c in at.caption if "scored exactly" in c.value)
    assert caption.endswith("growths); the other cells are not scored") and f"of the grid's {2 * POINTS} points" in caption


def test_a_cluster_out_of_reach_is_a_message_and_caches_nothing(page, tmp_path):
    settings = dict(sweep_layers=LAYERS, sweep_points=POINTS, sweep_folder=str(tmp_path))
    at = page("pages/sensitivity.py", **settings, sweep_on="cluster", sweep_address="127.0.0.1:9")  # discard port
    [b for b in at.button if b.label == "Run exact sweep"][0].click().run()
    assert not at.exception, at.exception
    assert len(at.error) == 1 and at.error[0].value.startswith("cannot reach the Ray cluster at 127.0.0.1:9")
    assert list(tmp_path.iterdir()) == []  # no partial cache entries


def test_a_sweep_on_a_local_ray_instance_draws_the_in_process_table(page, tmp_path):
    pytest.importorskip("ray")  # make test installs the extra; without it the page says how to
    settings = dict(sweep_layers=LAYERS, sweep_points=POINTS)
    local = page("pages/sensitivity.py", **settings, sweep_folder=str(tmp_path / "local"))
    [b for b in local.button if b.label == "Run exact sweep"][0].click().run()
    on_ray = page("pages/sensitivity.py", **settings, sweep_folder=str(tmp_path / "ray"), sweep_on="ray")
    [b for b in on_ray.button if b.label == "Run exact sweep"][0].click().run()
    assert not on_ray.exception, on_ray.exception
    assert not on_ray.error
    assert np.array_equal(_array(_figures(on_ray)[0]["data"][0]["z"]), _array(_figures(local)[0]["data"][0]["z"]),
                          equal_nan=True)

"""The figure builders are pure: data in, a titled figure with that data out."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from core.decompose.rank import rank_text
from core.evaluate.comparison import compare_outputs
from core.layers.study import Spectrum
from core.task import Metric, get_task
from dashboard import plots
from dashboard.format import human, percent, points, share


TOP1 = get_task("classification").metrics[0]


def test_spectrum_marks_the_cut_and_the_energy():
    fig = plots.spectrum([Spectrum("input rank", np.array([4.0, 2.0, 1.0])), Spectrum("output rank", np.array([3.0, 1.0]))], [2, 1])
    assert [a.text for a in fig.layout.annotations] == ["input rank: 2 of 3 kept, 95.2 % energy", "output rank: 1 of 2 kept, 90.0 % energy"]
    assert list(fig.data[0].marker.color) == [plots.BLUE, plots.BLUE, plots.GREY]
    assert "Spectrum" in fig.layout.title.text and len(fig.layout.shapes) == 2


def test_error_curve_places_ranks_by_parameters():
    curve = pd.DataFrame({"rank": ["1", "2"], "fraction": [0.5, 1.0], "params": [10, 20], "error": [0.5, 0.0]})
    fig = plots.error_curve(curve, 20, ("2", 20, 0.0))
    assert list(fig.data[0].x) == [50.0, 100.0] and list(fig.data[0].text) == ["1", "2"]
    assert list(fig.data[1].x) == [100.0] and "Reconstruction error vs rank" in fig.layout.title.text


def test_frontier_points_carry_their_configuration_ids():
    history = pd.DataFrame({"id": [1, 2, 3], "top1": [0.9, 0.8, 0.7], "flops": [3e6, 2e6, 1e6],
                            "latency_ms": [None, 1.0, None], "label": ["a", "b", "c"]})
    fig = plots.frontier(history, {"flops": 4e6, "top1": 0.92, "latency_ms": None}, "flops", current=2, metric=TOP1)
    assert list(fig.data[0].customdata) == [1, 2, 3]
    assert [d.name for d in fig.data] == ["evaluated configurations", "current", "dense baseline", "Pareto front"]
    assert list(fig.data[3].x) == [1e6, 2e6, 3e6, 4e6]  # each point beats every cheaper one
    by_latency = plots.frontier(history, {"flops": 4e6, "top1": 0.92, "latency_ms": None}, "latency_ms", metric=TOP1)
    assert list(by_latency.data[0].customdata) == [2]  # only measured configurations


def test_pareto_front_keeps_the_points_nothing_beats():
    cost = pd.Series([3.0, 1.0, 2.0, 2.0, 4.0], index=[10, 11, 12, 13, 14])
    accuracy = pd.Series([0.9, 0.5, 0.5, 0.7, 0.8], index=cost.index)
    assert plots.pareto_front(cost, accuracy) == [11, 13, 10]  # 12 ties 11's accuracy at more cost; 14 costs more, scores less


def _sweep_table() -> pd.DataFrame:
    """A sensitivity table of two layers, two ranks each (columns of ``core.sweep.table``)."""
    rows = [("", "dense", "", 1.0, 100, 1000, 0.9, 0.30), ("a", "dense", "", 1.0, 40, 400, 0.9, 0.30),
            ("b", "dense", "", 1.0, 60, 600, 0.9, 0.30), ("a", "svd", "1", 0.5, 10, 100, 0.6, 1.0),
            ("a", "svd", "2", 1.0, 30, 300, 0.9, 0.30), ("b", "tucker2", "1x1", 0.25, 12, 120, 0.85, 0.5),
            ("b", "tucker2", "4x4", 1.0, 70, 700, 0.92, 0.28)]
    return pd.DataFrame(rows, columns=["layer", "method", "rank", "fraction", "params", "flops", "top1", "loss"]).assign(
        task="classification")


def test_sensitivity_heatmap_and_curves_show_the_table():
    heat = plots.sensitivity_heatmap(_sweep_table()).data[0]
    assert list(heat.y) == ["a", "b"] and list(heat.x) == [1, 2]
    np.testing.assert_allclose(heat.z, [[30.0, 0.0], [5.0, -2.0]])  # percentage points below the dense model's 90 %
    assert heat.text.tolist() == [["1", "2"], ["1x1", "4x4"]] and heat.zmid == 0
    assert list(heat.customdata[1][0]) == ["b", "tucker2", "1x1", 0.25, 12, 120, 0.85]
    curves = plots.sensitivity_curves(_sweep_table(), "loss", "flops_kept")
    assert [c.name for c in curves.data] == ["a", "b"]
    assert list(curves.data[1].x) == [20.0, 700 / 6] and list(curves.data[1].y) == [0.5, 0.28]


def test_a_fidelity_sweep_is_drawn_by_its_headline():
    table = _sweep_table().rename(columns={"top1": "agreement"}).assign(task="fidelity")  # its loss column: the KL
    heat = plots.sensitivity_heatmap(table)
    assert heat.layout.title.text.startswith("Top-1 agreement drop when only this layer is compressed")
    np.testing.assert_allclose(heat.data[0].z, [[30.0, 0.0], [5.0, -2.0]])
    assert "top-1 agreement %{customdata[6]:.2%}" in heat.data[0].hovertemplate
    assert plots.sensitivity_curves(table, "loss").layout.yaxis.title.text == "loss (KL divergence)"
    assert plots.sensitivity_curves(table).layout.yaxis.title.text == "top-1 agreement (%)"


def test_frontier_of_a_lower_is_better_metric():
    error = Metric("error", False, "an error")
    history = pd.DataFrame({"id": [1, 2], "error": [0.5, 0.2], "flops": [1e6, 2e6], "latency_ms": [None, None],
                            "label": ["a", "b"]})
    fig = plots.frontier(history, {"flops": 3e6, "error": 0.1}, "flops", metric=error)
    assert list(fig.data[-1].x) == [1e6, 2e6, 3e6]  # each costs more for a lower error
    assert fig.layout.yaxis.title.text == "error on the evaluation subset"


def test_totals_and_layer_costs():
    fig = plots.totals(pd.DataFrame({"what": ["parameters", "latency"], "ratio": [0.5, 1.2]}))
    assert list(fig.data[0].text) == ["50 %", "120 %"] and list(fig.data[0].marker.color) == [plots.BLUE, plots.RED]
    table = pd.DataFrame({"name": ["a"], "params_before": [10], "params_after": [4], "flops_before": [100], "flops_after": [40]})
    assert len(plots.layer_costs(table).data) == 4


def test_numbers_have_units_and_baselines():
    assert human(1_234_567) == "1.23 M" and human(999) == "999"
    assert share(48, 100) == "48 % of baseline" and share(5, 100, "dense layer") == "5.0 % of dense layer"
    assert percent(0.9183) == "91.83 %" and percent(None) == "—"
    assert points(-0.0123) == "-1.23 pp" and rank_text([8, 4]) == "8x4"


def _comparison(crop: tuple[int, int, int, int]):
    """A flat 24 x 32 photo: dense = bicubic = HR, compressed = HR with 30 more levels of red in its top-left 2 x 3 pixels."""
    hr = torch.full((3, 24, 32), 100 / 255)
    compressed = hr.clone()
    compressed[0, :2, :3] += 30 / 255
    return compare_outputs(hr, hr.clone(), hr.clone(), compressed, 2, crop=crop)


def test_image_panels_are_four_linked_images_at_the_photos_coordinates():
    comparison = _comparison((0, 4, 8, 8))
    fig = plots.image_panels(comparison, 2)
    assert [type(t).__name__ for t in fig.data] == ["Image"] * 4
    for trace, name in zip(fig.data, ("hr", "bicubic", "dense", "compressed")):
        assert np.array_equal(trace.z, comparison.panel(name)) and (trace.x0, trace.y0) == (4, 0)
    assert [a.text for a in fig.layout.annotations] == ["HR photo", "Bicubic x2 · 100.00 dB", "Dense model · 100.00 dB",
                                                        "Compressed (plan) · 100.00 dB"]  # the change is left of the crop
    assert [fig.layout[f"xaxis{i}"].matches for i in (2, 3, 4)] == ["x"] * 3
    assert [fig.layout[f"yaxis{i}"].matches for i in (2, 3, 4)] == ["y"] * 3
    assert fig.layout.title.text.startswith("8x8 HR pixels from (0, 4), upscaled x2 four ways")


def test_error_map_is_the_mean_rgb_difference_per_pixel():
    fig = plots.error_map(_comparison((0, 0, 8, 8)))
    expected = np.zeros((8, 8))
    expected[:2, :3] = 10.0  # 30 levels of red, one channel of three
    assert np.array_equal(fig.data[0].z, expected) and (fig.data[0].zmin, fig.data[0].zmax) == (0, 10.0)
    assert "mean |Δ| over R, G, B in 8-bit levels (mean 0.94, max 10)" in fig.layout.title.text
    assert fig.layout.yaxis.autorange == "reversed" and fig.layout.yaxis.scaleanchor == "x"
    assert fig.data[0].colorscale[0] == (0.0, "rgb(0, 0, 4)")  # Inferno, not as "#000004" (a Streamlit placeholder)
    assert not any(colour.startswith("#0000") for _, colour in fig.data[0].colorscale)
    assert plots.error_map(_comparison((4, 4, 8, 8))).data[0].zmax == 1.0  # no difference: the scale stays 0-1

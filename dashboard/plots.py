"""Pure figure builders: data in, a Plotly figure out, no Streamlit inside. Every figure has a title that says what it shows."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

BLUE, ORANGE, GREY, RED = "#4c78a8", "#f58518", "#9d9d9d", "#e45756"
MARGIN = dict(l=50, r=20, t=60, b=40)


def layer_bars(table: pd.DataFrame) -> go.Figure:
    """Per-layer parameters and FLOPs (one sample) as two bar rows sharing the layer axis."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=("Parameters per layer", "FLOPs per layer (one image, 1 MAC = 2 FLOPs)"))
    fig.add_bar(x=table["name"], y=table["params"], name="parameters", marker_color=BLUE, row=1, col=1)
    fig.add_bar(x=table["name"], y=table["flops"], name="FLOPs", marker_color=ORANGE, row=2, col=1)
    fig.update_yaxes(title_text="parameters", row=1, col=1)
    fig.update_yaxes(title_text="FLOPs", row=2, col=1)
    fig.update_layout(height=520, showlegend=False, margin=dict(l=40, r=10, t=40, b=10))
    return fig


def spectrum(spectra: Sequence, ranks: Sequence[int]) -> go.Figure:
    """Singular values of each truncated mode (log scale), the kept ones coloured, the cut-off marked with the energy kept.

    ``spectra`` are :class:`core.layer_study.Spectrum`; ``ranks`` the chosen rank of each.
    """
    fig = make_subplots(rows=1, cols=len(spectra), subplot_titles=[
        f"{s.mode}: {r} of {len(s.values)} kept, {100 * s.energy_kept(r):.1f} % energy" for s, r in zip(spectra, ranks)])
    for col, (s, r) in enumerate(zip(spectra, ranks), start=1):
        index = np.arange(1, len(s.values) + 1)
        colours = [BLUE if i <= r else GREY for i in index]
        fig.add_bar(x=index, y=s.values, marker_color=colours, name=s.mode, row=1, col=col,
                    hovertemplate="σ%{x} = %{y:.4g}<extra></extra>")
        fig.add_vline(x=r + 0.5, line_dash="dash", line_color=RED, row=1, col=col)
        fig.update_xaxes(title_text="index (descending)", row=1, col=col)
        fig.update_yaxes(type="log", title_text="singular value" if col == 1 else None, row=1, col=col)
    fig.update_layout(title="Spectrum of the weight: kept (blue) and cut (grey) singular values; dashed line = cut-off",
                      height=340, showlegend=False, margin=MARGIN)
    return fig


def error_curve(curve: pd.DataFrame, dense_params: int, chosen: tuple[str, int, float] | None = None) -> go.Figure:
    """Relative output error of the layer at each rank of ``curve`` (``core.layer_study.error_curve``), placed by the
    layer's parameters at that rank, so ranks of several modes share one axis; ``chosen`` = (rank text, params, error)."""
    fig = go.Figure()
    fig.add_scatter(x=100 * curve["params"] / dense_params, y=curve["error"], mode="lines+markers+text", name="error",
                    text=curve["rank"], textposition="top right", line_color=BLUE,
                    hovertemplate="rank %{text}<br>%{x:.0f} % of the dense layer's parameters<br>error %{y:.3g}<extra></extra>")
    if chosen is not None:
        rank, params, error = chosen
        fig.add_scatter(x=[100 * params / dense_params], y=[error], mode="markers", name=f"rank {rank}",
                        marker=dict(color=RED, size=13, symbol="diamond"),
                        hovertemplate=f"chosen rank {rank}<br>error %{{y:.3g}}<extra></extra>")
    fig.add_vline(x=100, line_dash="dot", line_color=GREY)
    fig.update_layout(title="Reconstruction error vs rank: ‖f_r(x) − f(x)‖ / ‖f(x)‖ on this layer's inputs (red: chosen rank)",
                      xaxis_title="layer parameters at that rank, % of the dense layer (points labelled by rank)",
                      yaxis_title="relative output error", yaxis_rangemode="tozero", height=360, margin=MARGIN, showlegend=False)
    return fig


def totals(rows: pd.DataFrame) -> go.Figure:
    """Each total of the plan as a percentage of the dense model's (``rows``: ``what``, ``ratio``)."""
    fig = go.Figure(go.Bar(x=rows["what"], y=rows["ratio"] * 100, marker_color=[BLUE if r <= 1 else RED for r in rows["ratio"]],
                           text=[f"{100 * r:.0f} %" for r in rows["ratio"]], textposition="outside"))
    fig.add_hline(y=100, line_dash="dash", line_color=GREY, annotation_text="baseline (dense model)")
    fig.update_layout(title="Planned model against the dense baseline (100 % = unchanged)", yaxis_title="% of baseline",
                      height=340, margin=MARGIN, yaxis_rangemode="tozero")
    return fig


def layer_costs(table: pd.DataFrame) -> go.Figure:
    """Per-layer parameters and FLOPs before and after the plan (``core.plan_cost.PlanCost.layers``)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Parameters per layer", "FLOPs per layer (one image)"))
    for col, what in enumerate(("params", "flops"), start=1):
        fig.add_bar(x=table["name"], y=table[f"{what}_before"], name="dense", marker_color=GREY, row=1, col=col,
                    showlegend=col == 1)
        fig.add_bar(x=table["name"], y=table[f"{what}_after"], name="planned", marker_color=BLUE, row=1, col=col,
                    showlegend=col == 1)
    fig.update_layout(title="Cost of each planned layer: dense (grey) and as planned (blue)", barmode="group",
                      height=380, margin=MARGIN)
    return fig


def frontier(history: pd.DataFrame, baseline: dict, x: str, current: int | None = None) -> go.Figure:
    """Accuracy against ``x`` ("flops" or "latency_ms") of every evaluated configuration; the baseline and current marked.

    ``history`` has ``id, accuracy, flops, latency_ms, params, label``; each point's ``customdata`` is its ``id``,
    which the page reads back when a point is clicked.
    """
    label = {"flops": "FLOPs per image", "latency_ms": "latency (ms, median)"}[x]
    shown = history.dropna(subset=[x, "accuracy"])
    fig = go.Figure()
    fig.add_scatter(x=shown[x], y=shown["accuracy"] * 100, mode="markers", name="evaluated configurations",
                    customdata=shown["id"], text=shown["label"], marker=dict(size=11, color=BLUE),
                    hovertemplate="%{text}<br>" + label + " %{x:.4s}<br>accuracy %{y:.2f} %<extra>click to restore</extra>")
    if current is not None and (shown["id"] == current).any():
        now = shown[shown["id"] == current]
        fig.add_scatter(x=now[x], y=now["accuracy"] * 100, mode="markers", name="current", hoverinfo="skip",
                        marker=dict(size=17, color="rgba(0,0,0,0)", line=dict(color=RED, width=3)))
    if baseline.get(x) is not None and baseline.get("accuracy") is not None:
        fig.add_scatter(x=[baseline[x]], y=[baseline["accuracy"] * 100], mode="markers", name="dense baseline",
                        marker=dict(size=13, color=ORANGE, symbol="star"), hovertemplate="dense baseline<extra></extra>")
    fig.update_layout(title=f"Accuracy vs {label}: every configuration evaluated<br><sup>click a point to restore it</sup>",
                      xaxis_title=label, yaxis_title="top-1 accuracy on the evaluation subset (%)", height=380,
                      margin=MARGIN, legend=dict(orientation="h", y=-0.2))
    return fig

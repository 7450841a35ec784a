"""Pure figure builders: data in, a Plotly figure out, no Streamlit inside. Every figure has a title that says what it shows."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.sweep import DENSE, MODEL

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

    ``spectra`` are :class:`core.layers.study.Spectrum`; ``ranks`` the chosen rank of each.
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
    """Relative output error of the layer at each rank of ``curve`` (``core.layers.study.error_curve``), placed by the
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
    """Per-layer parameters and FLOPs before and after the plan (``core.plan.cost.PlanCost.layers``)."""
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
    """Accuracy against ``x`` ("flops" or "latency_ms") of every evaluated configuration; the baseline and current
    marked, and the Pareto front of them all (with the baseline) drawn as a staircase.

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
    tried = shown[[x, "accuracy"]]
    if baseline.get(x) is not None and baseline.get("accuracy") is not None:
        fig.add_scatter(x=[baseline[x]], y=[baseline["accuracy"] * 100], mode="markers", name="dense baseline",
                        marker=dict(size=13, color=ORANGE, symbol="star"), hovertemplate="dense baseline<extra></extra>")
        tried = pd.concat([tried, pd.DataFrame({x: [baseline[x]], "accuracy": [baseline["accuracy"]]})], ignore_index=True)
    front = tried.loc[pareto_front(tried[x], tried["accuracy"])].sort_values(x)
    fig.add_scatter(x=front[x], y=front["accuracy"] * 100, mode="lines", name="Pareto front", hoverinfo="skip",
                    line=dict(color=GREY, dash="dot", shape="hv"))
    fig.update_layout(title=f"Accuracy vs {label} of every configuration evaluated<br>"
                            "<sup>dotted: their Pareto front (dense model included); click a point to restore it</sup>",
                      xaxis_title=label, yaxis_title="top-1 accuracy on the evaluation subset (%)", height=380,
                      margin=MARGIN, legend=dict(orientation="h", y=-0.2))
    return fig


def pareto_front(cost: pd.Series, accuracy: pd.Series) -> list:
    """Index labels of the points no other point beats: none costs no more with a higher accuracy, or less with the same."""
    order = sorted(cost.index, key=lambda i: (cost[i], -accuracy[i]))
    front, best = [], -np.inf
    for i in order:
        if accuracy[i] > best:
            front.append(i)
            best = accuracy[i]
    return front


def sweep_points(table: pd.DataFrame) -> pd.DataFrame:
    """The swept points of a sensitivity table (:mod:`core.sweep.table`), with what the figures show.

    Adds ``drop`` (top-1 accuracy drop against the dense model, percentage points), ``flops_kept`` and
    ``params_kept`` (against the dense layer), ``row`` (the layer, with the method when a layer has several)
    and ``step`` (1 = the lowest rank of the layer's grid, up to its full rank).
    """
    model = table[table["layer"] == MODEL].iloc[0]
    dense = table[(table["method"] == DENSE) & (table["layer"] != MODEL)].set_index("layer")
    out = table[table["method"] != DENSE].copy()
    several = out.groupby("layer")["method"].transform("nunique") > 1
    out["drop"] = 100 * (model["top1"] - out["top1"])
    out["flops_kept"] = out["flops"] / out["layer"].map(dense["flops"])
    out["params_kept"] = out["params"] / out["layer"].map(dense["params"])
    out["row"] = out["layer"].where(~several, out["layer"] + " · " + out["method"])
    out["step"] = out.groupby("row", sort=False).cumcount() + 1
    return out.reset_index(drop=True)


SWEEP_HOVER = ("%{customdata[0]} · %{customdata[1]} rank %{customdata[2]} (%{customdata[3]:.0%} of full rank)<br>"
               "params %{customdata[4]:,} · FLOPs %{customdata[5]:.4s}<br>top-1 %{customdata[6]:.2%}")
SWEEP_FIELDS = ["layer", "method", "rank", "fraction", "params", "flops", "top1"]


def sensitivity_heatmap(table: pd.DataFrame) -> go.Figure:
    """Accuracy drop (percentage points vs the dense model) of each layer (rows, forward order) at each rank of its
    grid (columns, lowest rank to full rank; the cell text is the rank), only that layer changed.

    ``table`` is a sweep table (:func:`core.sweep.sweep`); the hover shows method, rank, params and FLOPs.
    """
    pts = sweep_points(table)
    rows, steps = list(dict.fromkeys(pts["row"])), sorted(pts["step"].unique())
    z = pts.pivot(index="row", columns="step", values="drop").reindex(index=rows, columns=steps)
    text = pts.pivot(index="row", columns="step", values="rank").reindex(index=rows, columns=steps).fillna("")
    custom = np.stack([pts.pivot(index="row", columns="step", values=f).reindex(index=rows, columns=steps).to_numpy(object)
                       for f in SWEEP_FIELDS], axis=-1)  # (rows, steps, fields)
    typical = pts.groupby("step")["fraction"].median()
    fig = go.Figure(go.Heatmap(
        z=z.to_numpy(float), x=steps, y=rows, text=text.to_numpy(), texttemplate="%{text}", customdata=custom,
        colorscale="RdBu_r", zmid=0, colorbar=dict(title="drop (pp)"), xgap=2, ygap=2,
        hovertemplate=SWEEP_HOVER + "<br>accuracy drop %{z:.2f} pp<extra></extra>"))
    fig.update_xaxes(title_text="rank, from 1 (left) to the layer's full rank (right); tick: median share of full rank",
                     tickvals=steps, ticktext=[f"≈{100 * typical[s]:.0f} %" for s in steps])
    fig.update_yaxes(autorange="reversed", title_text=None)
    fig.update_layout(title="Accuracy drop when only this layer is compressed (percentage points vs the dense model; "
                            "red = worse)<br><sup>cell text: the rank</sup>",
                      height=max(300, 90 + 32 * len(rows)), margin=MARGIN)
    return fig


CURVE_Y = {"top1": "top-1 accuracy (%)", "loss": "loss (mean cross-entropy)"}
CURVE_X = {"fraction": "rank kept, share of the full rank (%)", "flops_kept": "FLOPs kept, % of the dense layer"}


def sensitivity_curves(table: pd.DataFrame, y: str = "top1", x: str = "fraction") -> go.Figure:
    """One line per layer (and method): ``y`` ("top1" or "loss") of the model with only that layer compressed,
    against ``x`` ("fraction" of full rank or "flops_kept" of the dense layer); the dense model dashed."""
    pts = sweep_points(table)
    scale = 100 if y == "top1" else 1
    fig = go.Figure()
    for row, group in pts.groupby("row", sort=False):
        fig.add_scatter(x=100 * group[x], y=scale * group[y], mode="lines+markers", name=row,
                        customdata=group[SWEEP_FIELDS].to_numpy(object), hovertemplate=SWEEP_HOVER + "<extra></extra>")
    dense = table.loc[table["layer"] == MODEL, y].iloc[0]
    fig.add_hline(y=scale * dense, line_dash="dash", line_color=GREY, annotation_text="dense model")
    fig.update_layout(title=f"{CURVE_Y[y].split(' (')[0].capitalize()} with only one layer compressed, per layer",
                      xaxis_title=CURVE_X[x], yaxis_title=CURVE_Y[y], height=420, margin=MARGIN)
    return fig


def length_curves(table: pd.DataFrame) -> go.Figure:
    """Latency and peak memory of one attention layer against sequence length, one line per variant (log-log);
    ``table`` is :func:`core.bench.attention.length_sweep`'s."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Latency (median, ms)", "Peak memory (MB)"))
    for i, (variant, rows) in enumerate(table.groupby("variant", sort=False)):
        colour = [BLUE, ORANGE, RED, GREY, "#54a24b", "#b279a2", "#72b7b2", "#eeca3b"][i % 8]
        for col, what in enumerate(("latency_ms", "memory_mb"), start=1):
            fig.add_scatter(x=rows["seq_len"], y=rows[what], mode="lines+markers", name=variant, line_color=colour,
                            legendgroup=variant, showlegend=col == 1, row=1, col=col,
                            hovertemplate=f"{variant}<br>N = %{{x}}<br>%{{y:.3g}}<extra></extra>")
    fig.update_xaxes(type="log", title_text="sequence length N")
    fig.update_yaxes(type="log")
    method = table["memory_method"].iloc[0] if "memory_method" in table and len(table) else ""
    fig.update_layout(title=f"One attention layer against sequence length (measured; memory by {method})",
                      height=380, margin=MARGIN, legend=dict(orientation="h", y=-0.25))
    return fig


def group_densities(table: pd.DataFrame) -> go.Figure:
    """Chosen density of every channel group (bars) with its capacity estimate (diamonds); ``table`` has ``group``,
    ``density``, ``recommended_density``."""
    fig = go.Figure()
    fig.add_bar(x=table["group"], y=table["density"], name="chosen density", marker_color=BLUE,
                hovertemplate="%{x}: density %{y:.2f}<extra></extra>")
    fig.add_scatter(x=table["group"], y=table["recommended_density"], mode="markers", name="capacity estimate",
                    marker=dict(symbol="diamond", size=11, color=RED),
                    hovertemplate="%{x}: capacity estimate %{y:.2f}<extra></extra>")
    fig.update_layout(title="Density of each channel group (blue) and its capacity estimate from the channel spectrum (red)",
                      yaxis_title="fraction of channels kept", yaxis_range=[0, 1.05], height=360, margin=MARGIN,
                      legend=dict(orientation="h", y=-0.3))
    return fig


def channel_spectrum(spectrum: pd.DataFrame, cutoff: int, kept: int) -> go.Figure:
    """Energy of a group's ordered weights at each DCT frequency along the channel axis (log scale); dashed: the
    capacity cut-off, dotted: the frequencies the chosen density can hold (Nyquist: half the kept channels)."""
    fig = go.Figure(go.Bar(x=spectrum["frequency"], y=spectrum["energy"], marker_color=BLUE,
                           hovertemplate="frequency %{x}: %{y:.3g} of the energy<extra></extra>"))
    fig.add_vline(x=cutoff - 0.5, line_dash="dash", line_color=RED, annotation_text="capacity cut-off")
    fig.add_vline(x=kept / 2 - 0.5, line_dash="dot", line_color=ORANGE, annotation_text="chosen density / 2",
                  annotation_position="bottom right")
    fig.update_yaxes(type="log", title_text="share of energy")
    fig.update_layout(title="Channel spectrum of the group: DCT of its smoothly ordered weights along the channel axis",
                      xaxis_title="frequency (cycles over the channel axis)", height=340, margin=MARGIN)
    return fig


def method_comparison(table: pd.DataFrame) -> go.Figure:
    """Accuracy of each way of reaching the same densities (``table``: ``how``, ``accuracy``, ``params``)."""
    fig = go.Figure(go.Bar(x=table["how"], y=100 * table["accuracy"], marker_color=[ORANGE if h == "resample" else BLUE
                                                                                  for h in table["how"]],
                           text=[f"{100 * a:.1f} %" for a in table["accuracy"]], textposition="outside"))
    fig.update_layout(title="Same densities, no fine-tune: resampling (orange) against each pruning score",
                      yaxis_title="top-1 accuracy (%)", yaxis_range=[0, 105], height=340, margin=MARGIN)
    return fig

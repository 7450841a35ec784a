"""Pure figure builders: data in, a Plotly figure out, no Streamlit inside. Every figure has a title that says what it shows."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import hex_to_rgb, sequential
from plotly.subplots import make_subplots

from core.evaluate.comparison import PANELS, ImageComparison
from core.sweep import DENSE, MODEL
from core.sweep.table import headline_score, table_task
from core.task import Metric
from dashboard.format import capital

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


def layer_speed(table: pd.DataFrame) -> go.Figure:
    """Per planned layer, the share of its FLOPs and of its measured time the plan saves (``saved_flops``, ``saved``)."""
    fig = go.Figure()
    fig.add_bar(x=table["name"], y=table["saved_flops"] * 100, name="FLOPs saved", marker_color=GREY)
    fig.add_bar(x=table["name"], y=table["saved"] * 100, name="time saved (measured)", marker_color=BLUE)
    fig.update_layout(title="What each planned layer saves: FLOPs (grey) against measured time (blue); below 0: slower",
                      barmode="group", height=380, margin=MARGIN, yaxis_title="% of the dense layer")
    return fig


def frontier(history: pd.DataFrame, baseline: dict, x: str, current: int | None = None, *, metric: Metric) -> go.Figure:
    """``metric`` (the task's headline) against ``x`` ("flops" or "latency_ms") of every evaluated configuration; the
    baseline and current marked, and the Pareto front of them all (with the baseline) drawn as a staircase.

    ``history`` has ``id, <metric.name>, flops, latency_ms, params, label``; ``baseline`` has ``x`` and ``metric.name``.
    Each point's ``customdata`` is its ``id``, which the page reads back when a point is clicked.
    """
    label, y, scale = {"flops": "FLOPs per image", "latency_ms": "latency (ms, median)"}[x], metric.name, _scale(metric)
    shown = history.dropna(subset=[x, y])
    fig = go.Figure()
    fig.add_scatter(x=shown[x], y=shown[y] * scale, mode="markers", name="evaluated configurations",
                    customdata=shown["id"], text=shown["label"], marker=dict(size=11, color=BLUE),
                    hovertemplate="%{text}<br>" + label + f" %{{x:.4s}}<br>{metric.title} %{{y:.{_digits(metric)}f}}"
                                  + _unit(metric) + "<extra>click to restore</extra>")
    if current is not None and (shown["id"] == current).any():
        now = shown[shown["id"] == current]
        fig.add_scatter(x=now[x], y=now[y] * scale, mode="markers", name="current", hoverinfo="skip",
                        marker=dict(size=17, color="rgba(0,0,0,0)", line=dict(color=RED, width=3)))
    tried = shown[[x, y]]
    if baseline.get(x) is not None and baseline.get(y) is not None:
        fig.add_scatter(x=[baseline[x]], y=[baseline[y] * scale], mode="markers", name="dense baseline",
                        marker=dict(size=13, color=ORANGE, symbol="star"), hovertemplate="dense baseline<extra></extra>")
        tried = pd.concat([tried, pd.DataFrame({x: [baseline[x]], y: [baseline[y]]})], ignore_index=True)
    better = tried[y] if metric.higher_is_better else -tried[y]
    front = tried.loc[pareto_front(tried[x], better)].sort_values(x)
    fig.add_scatter(x=front[x], y=front[y] * scale, mode="lines", name="Pareto front", hoverinfo="skip",
                    line=dict(color=GREY, dash="dot", shape="hv"))
    fig.update_layout(title=f"{capital(metric.title)} vs {label} of every configuration evaluated<br>"
                            "<sup>dotted: their Pareto front (dense model included); click a point to restore it</sup>",
                      xaxis_title=label, yaxis_title=f"{metric.title} on the evaluation subset{_axis_unit(metric)}", height=380,
                      margin=MARGIN, legend=dict(orientation="h", y=-0.2))
    return fig


def pareto_front(cost: pd.Series, score: pd.Series) -> list:
    """Index labels of the points no other point beats: none costs no more with a higher score, or less with the same."""
    order = sorted(cost.index, key=lambda i: (cost[i], -score[i]))
    front, best = [], -np.inf
    for i in order:
        if score[i] > best:
            front.append(i)
            best = score[i]
    return front


def headline(table: pd.DataFrame) -> Metric:
    """The headline metric of the task a sweep table is scored by (``core.sweep.table.table_task``)."""
    task = table_task(table)
    return next(m for m in task.metrics if m.name == task.headline)


def sweep_points(table: pd.DataFrame) -> pd.DataFrame:
    """The swept points of a sensitivity table (:mod:`core.sweep.table`), with what the figures show.

    Adds ``score`` (the task's headline metric), ``drop`` (how much worse it is than the dense model's, by
    ``core.sweep.table.headline_score``: percentage points for a fraction), ``flops_kept`` and ``params_kept``
    (against the dense layer), ``row`` (the layer, with the method when a layer has several) and ``step``
    (1 = the lowest rank of the layer's grid, up to its full rank).
    """
    signed, metric = headline_score(table), headline(table)
    model = table["layer"] == MODEL
    dense = table[(table["method"] == DENSE) & ~model].set_index("layer")
    out = table[table["method"] != DENSE].copy()
    several = out.groupby("layer")["method"].transform("nunique") > 1
    out["score"] = out[metric.name]
    out["drop"] = _scale(metric) * (signed[model].iloc[0] - signed[out.index])
    out["flops_kept"] = out["flops"] / out["layer"].map(dense["flops"])
    out["params_kept"] = out["params"] / out["layer"].map(dense["params"])
    out["row"] = out["layer"].where(~several, out["layer"] + " · " + out["method"])
    out["step"] = out.groupby("row", sort=False).cumcount() + 1
    return out.reset_index(drop=True)


SWEEP_FIELDS = ["layer", "method", "rank", "fraction", "params", "flops", "score"]


def _sweep_hover(metric: Metric) -> str:
    """The hover text of a swept point (its ``customdata`` are :data:`SWEEP_FIELDS`)."""
    score = ".2%" if metric.fraction else ".4f"
    return ("%{customdata[0]} · %{customdata[1]} rank %{customdata[2]} (%{customdata[3]:.0%} of full rank)<br>"
            f"params %{{customdata[4]:,}} · FLOPs %{{customdata[5]:.4s}}<br>{metric.title} %{{customdata[6]:{score}}}")


def sensitivity_heatmap(table: pd.DataFrame) -> go.Figure:
    """How much worse the task's headline metric gets (vs the dense model; percentage points for a fraction) with
    each layer (rows, forward order) at each rank of its grid (columns, lowest rank to full rank; the cell text is
    the rank), only that layer changed.

    ``table`` is a sweep table (:func:`core.sweep.sweep`); the hover shows method, rank, params, FLOPs and the metric.
    """
    pts, metric = sweep_points(table), headline(table)
    rows, steps = list(dict.fromkeys(pts["row"])), sorted(pts["step"].unique())
    z = pts.pivot(index="row", columns="step", values="drop").reindex(index=rows, columns=steps)
    text = pts.pivot(index="row", columns="step", values="rank").reindex(index=rows, columns=steps).fillna("")
    custom = np.stack([pts.pivot(index="row", columns="step", values=f).reindex(index=rows, columns=steps).to_numpy(object)
                       for f in SWEEP_FIELDS], axis=-1)  # (rows, steps, fields)
    typical = pts.groupby("step")["fraction"].median()
    drop, unit = ("drop" if metric.higher_is_better else "rise"), ("pp" if metric.fraction else "")
    fig = go.Figure(go.Heatmap(
        z=z.to_numpy(float), x=steps, y=rows, text=text.to_numpy(), texttemplate="%{text}", customdata=custom,
        colorscale="RdBu_r", zmid=0, colorbar=dict(title=f"{drop} {unit}".strip()), xgap=2, ygap=2,
        hovertemplate=_sweep_hover(metric) + f"<br>{metric.title} {drop} %{{z:.{_digits(metric)}f}} {unit}<extra></extra>"))
    fig.update_xaxes(title_text="rank, from 1 (left) to the layer's full rank (right); tick: median share of full rank",
                     tickvals=steps, ticktext=[f"≈{100 * typical[s]:.0f} %" for s in steps])
    fig.update_yaxes(autorange="reversed", title_text=None)
    fig.update_layout(title=f"{capital(metric.title)} {drop} when only this layer is compressed "
                            f"({'percentage points' if metric.fraction else 'difference'} vs the dense model; red = worse)"
                            "<br><sup>cell text: the rank</sup>",
                      height=max(300, 90 + 32 * len(rows)), margin=MARGIN)
    return fig


CURVE_Y = ("score", "loss")  # the task's headline metric, the task's loss
CURVE_X = {"fraction": "rank kept, share of the full rank (%)", "flops_kept": "FLOPs kept, % of the dense layer"}


def curve_title(table: pd.DataFrame, y: str) -> str:
    """What ``y`` (one of :data:`CURVE_Y`) is for the task of sweep ``table``: the headline's title, or the loss."""
    task = table_task(table)
    loss = next(m.title for m in task.metrics if m.name == task.loss_metric)
    return headline(table).title if y == "score" else ("loss" if loss == "loss" else f"loss ({loss})")


def sensitivity_curves(table: pd.DataFrame, y: str = "score", x: str = "fraction") -> go.Figure:
    """One line per layer (and method): ``y`` ("score", the task's headline metric, or "loss") of the model with only
    that layer compressed, against ``x`` ("fraction" of full rank or "flops_kept" of the dense layer); the dense
    model dashed."""
    pts, metric = sweep_points(table), headline(table)
    scale = _scale(metric) if y == "score" else 1
    column = metric.name if y == "score" else "loss"
    fig = go.Figure()
    for row, group in pts.groupby("row", sort=False):
        fig.add_scatter(x=100 * group[x], y=scale * group[column], mode="lines+markers", name=row,
                        customdata=group[SWEEP_FIELDS].to_numpy(object), hovertemplate=_sweep_hover(metric) + "<extra></extra>")
    dense = table.loc[table["layer"] == MODEL, column].iloc[0]
    fig.add_hline(y=scale * dense, line_dash="dash", line_color=GREY, annotation_text="dense model")
    label = curve_title(table, y)
    fig.update_layout(title=f"{capital(label)} with only one layer compressed, per layer", xaxis_title=CURVE_X[x],
                      yaxis_title=label + (_axis_unit(metric) if y == "score" else ""), height=420, margin=MARGIN)
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


def method_comparison(table: pd.DataFrame, metric: Metric) -> go.Figure:
    """``metric`` of each way of reaching the same densities (``table``: ``how``, ``<metric.name>``, ``params``)."""
    values = _scale(metric) * table[metric.name]
    fig = go.Figure(go.Bar(x=table["how"], y=values, marker_color=[ORANGE if h == "resample" else BLUE for h in table["how"]],
                           text=[f"{v:.{_digits(metric) - 1}f}{_unit(metric)}" for v in values], textposition="outside"))
    fig.update_layout(title="Same densities, no fine-tune: resampling (orange) against each pruning score",
                      yaxis_title=metric.title + _axis_unit(metric), height=340, margin=MARGIN,
                      yaxis_range=[0, 105] if metric.fraction else None)
    return fig


# Inferno (dark = no difference) in rgb() form: Streamlit's theme swaps the colours #000001-#000040 of a chart for its
# own (placeholders of its template), and Inferno's hex form starts at #000004, which it would turn pink.
ERROR_SCALE = [[i / (len(sequential.Inferno) - 1), "rgb({}, {}, {})".format(*hex_to_rgb(c))]
               for i, c in enumerate(sequential.Inferno)]
PANEL_TITLES = {"hr": "HR photo", "bicubic": "Bicubic x{scale}", "dense": "Dense model", "compressed": "Compressed (plan)"}


def image_panels(comparison: ImageComparison, scale: int) -> go.Figure:
    """The crop of the HR photo, its bicubic upscale, the dense and the compressed model's images side by side
    (``core.evaluate.comparison.ImageComparison``: one ``go.Image`` each, in :data:`~core.evaluate.comparison.PANELS`
    order), placed at the photo's pixel coordinates; zooming or panning one moves all four. Each upscale's title gives
    the crop's Y-PSNR against the HR photo."""
    box = comparison.crop
    titles = [PANEL_TITLES[name].format(scale=scale) + ("" if name == "hr" else f" · {comparison.psnr[name]:.2f} dB")
              for name in PANELS]
    fig = make_subplots(rows=1, cols=len(PANELS), subplot_titles=titles, horizontal_spacing=0.01)
    for col, name in enumerate(PANELS, start=1):
        fig.add_trace(go.Image(z=comparison.panel(name), x0=box.left, y0=box.top, name=titles[col - 1],
                               hovertemplate="x %{x}, y %{y}<br>RGB %{z}<extra>%{fullData.name}</extra>"), row=1, col=col)
    fig.update_xaxes(matches="x", showticklabels=False)
    fig.update_yaxes(matches="y", showticklabels=False)
    fig.update_layout(title=f"{box.height}x{box.width} HR pixels from ({box.top}, {box.left}), upscaled x{scale} four "
                            "ways; Y-PSNR of the crop against the HR photo (zoom one, all follow)",
                      height=420, margin=dict(l=10, r=10, t=80, b=10))
    return fig


def error_map(comparison: ImageComparison) -> go.Figure:
    """Per pixel of the crop, how far the compressed model's image is from the dense one's: ``comparison.error``, the
    mean |Δ| over R, G and B in 8-bit levels, at the photo's pixel coordinates (0 where the images agree)."""
    box, error = comparison.crop, comparison.error
    fig = go.Figure(go.Heatmap(z=error, x0=box.left, y0=box.top, colorscale=ERROR_SCALE, zmin=0,
                               zmax=max(float(error.max()), 1.0), colorbar=dict(title="levels"),
                               hovertemplate="x %{x}, y %{y}<br>mean |Δ| %{z:.2f} levels<extra></extra>"))
    fig.update_xaxes(constrain="domain")
    fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain")
    fig.update_layout(title=f"Compressed against dense, per pixel: mean |Δ| over R, G, B in 8-bit levels "
                            f"(mean {error.mean():.2f}, max {error.max():.0f})", height=420, margin=MARGIN)
    return fig


# --- how a metric is drawn: fractions as percentages ------------------------------------------
def _scale(metric: Metric) -> float:
    return 100.0 if metric.fraction else 1.0


def _unit(metric: Metric) -> str:
    return " %" if metric.fraction else ""


def _axis_unit(metric: Metric) -> str:
    return " (%)" if metric.fraction else ""


def _digits(metric: Metric) -> int:
    """Decimals of a value in hover text: 2 for a percentage, 4 otherwise (as ``Metric.show``)."""
    return 2 if metric.fraction else 4

"""Pieces the pages draw from cached results: metrics against a baseline, the planned-model row of the Attention
and Sampling density pages, peak memory measured on request, and the Plan page's evaluated configurations."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import pandas as pd
import streamlit as st

from core.errors import RankscopeError
from core.plan import Plan
from dashboard import cached, plots
from dashboard.format import human, percent, points, share
from dashboard.state import Choice


def cost_metric(where, label: str, value: float | None, base: float | None, fmt: str | None = None, *,
                of: str = "baseline", help: str | None = None) -> None:
    """``value`` (``fmt.format(value)``, e.g. ``"{:.2f} ms"``; :func:`human` without ``fmt``) with its share of
    ``base`` as the delta, uncoloured; "—" when ``value`` is ``None`` (not measured)."""
    if value is None:
        where.metric(label, "—", help=help)
        return
    where.metric(label, human(value) if fmt is None else fmt.format(value), share(value, base, of), delta_color="off",
                 delta_arrow="off", help=help)


def accuracy_metrics(cols: Sequence, scored: dict | None, baseline: dict | None, label: str = "Accuracy", *,
                     loss: str | None = "Loss", baseline_name: str = "baseline", note: str = "") -> None:
    """Top-1 of ``scored`` (``cached.accuracy``) against ``baseline``'s in ``cols[0]`` and the mean loss, labelled
    ``loss`` (``None``: not shown), in ``cols[1]``; "—" without evaluation data (``scored`` is ``None``)."""
    if scored is None:
        cols[0].metric(label, "—", help="no evaluation data for this model")
        return
    cols[0].metric(label, percent(scored["accuracy"]), points(scored["accuracy"] - baseline["accuracy"]),
                   help=f"top-1 on {scored['samples']} evaluation images; {baseline_name} {percent(baseline['accuracy'])}{note}")
    if loss is not None:
        cols[1].metric(loss, f"{scored['loss']:.4f}", f"{scored['loss'] - baseline['loss']:+.4f}", delta_color="inverse",
                       help=f"mean cross-entropy; {baseline_name} {baseline['loss']:.4f}")


def memory_on_request(c: Choice, plans: list[Plan], label: str = "Measure peak memory") -> list[float] | None:
    """Peak memory of each plan's model once the user has asked for these plans (a button; the measurement runs
    a fresh process per model, seconds each), else ``None``; asked-for plans stay measured (cached)."""
    asked = st.session_state.setdefault("memory_asked", set())
    key = (c.key, c.data, tuple(plans), c.batch, c.threads, c.device)
    if st.button(label, help="runs each model once in a fresh process and reads its peak resident memory"):
        asked.add(key)
    if key not in asked:
        return None
    return [cached.planned_memory(*c.evaluation, plan, c.batch, c.threads) for plan in plans]


def planned_against_baseline(c: Choice, plan: Plan, baseline_name: str, accuracy_note: str = "") -> dict | None:
    """Five metrics of the model ``plan`` builds against the model as it is (the Attention and Sampling density
    pages): accuracy without fine-tune, parameters and FLOPs counted on the built model, latency measured at once,
    peak memory on request. A bad plan is a message on the page, which then stops.

    Returns the planned model's accuracy (``cached.accuracy``; ``None`` without evaluation data).
    """
    dense = Plan(c.model)
    try:
        base = cached.baseline_counts(*c.key)
        counted = cached.planned_counts(*c.evaluation, plan)
        baseline = cached.accuracy(*c.evaluation, c.threads, dense)
        planned = cached.accuracy(*c.evaluation, c.threads, plan)
        dense_ms = cached.planned_latency(*c.evaluation, dense, c.batch, c.threads)
        latency_ms = cached.planned_latency(*c.evaluation, plan, c.batch, c.threads)
    except RankscopeError as err:
        st.error(str(err))
        st.stop()
    cols = st.columns(5)
    accuracy_metrics(cols, planned, baseline, "Accuracy (no fine-tune)", loss=None, baseline_name=baseline_name,
                     note=accuracy_note)
    cost_metric(cols[1], "Parameters", counted["params"], base["params"], help="counted on the built model")
    cost_metric(cols[2], "FLOPs / image", counted["flops"], base["flops"], help="counted on the built model; 1 MAC = 2 FLOPs")
    cost_metric(cols[3], "Latency (median)", latency_ms, dense_ms, "{:.2f} ms",
                help=f"whole model at batch {c.batch}, measured; {baseline_name} {dense_ms:.2f} ms")
    with cols[4]:
        dense_mb, planned_mb = memory_on_request(c, [dense, plan]) or (None, None)
        cost_metric(st, "Peak memory", planned_mb, dense_mb, "{:.1f} MB",
                    help="model + input + one forward pass, measured in a fresh process"
                    + ("" if dense_mb is None else f"; {baseline_name} {dense_mb:.1f} MB"))
    return planned


def configurations(history: list[dict], dense_point: dict, current: int | None, restore: Callable[[int], None],
                   restore_key: str) -> None:
    """The configurations evaluated in this session (``state.history``): accuracy against FLOPs and, once measured,
    latency, with their Pareto fronts (click a point to restore it), their table, and a box to restore one."""
    frame = pd.DataFrame(history)
    left, right = st.columns(2)
    left.plotly_chart(plots.frontier(frame, dense_point, "flops", current), width="stretch", key="frontier_flops",
                      on_select=partial(_picked, "frontier_flops", restore), selection_mode="points")
    if frame["latency_ms"].notna().any():
        right.plotly_chart(plots.frontier(frame, dense_point, "latency_ms", current), width="stretch", key="frontier_latency",
                           on_select=partial(_picked, "frontier_latency", restore), selection_mode="points")
    else:
        right.info("Measure latency (button above) to place configurations on an accuracy-vs-latency chart.")
    shown = frame[["id", "layers", "params", "flops", "accuracy", "loss", "latency_ms", "peak_memory_mb", "full_accuracy"]]
    st.dataframe(shown, hide_index=True, width="stretch", column_config={
        "accuracy": st.column_config.NumberColumn("accuracy", format="percent"),
        "full_accuracy": st.column_config.NumberColumn("full test set", format="percent")})
    labels = {h["id"]: h["label"] for h in history}
    st.selectbox("Restore a configuration", list(labels), format_func=labels.get, index=None,
                 placeholder="or click its point in a chart", key=restore_key,
                 on_change=lambda: restore(st.session_state[restore_key]))


def _picked(chart: str, restore: Callable[[int], None]) -> None:
    """A point of ``chart`` was clicked: restore its configuration (its ``customdata`` is the id)."""
    selected = st.session_state[chart]["selection"]["points"]
    if selected and selected[0].get("customdata") is not None:
        restore(int(selected[0]["customdata"]))

"""Pieces the pages draw from cached results: costs and scores against a baseline (a task's metrics by their titles
and directions), the planned-model row of the Attention and Sampling density pages, peak memory measured on request,
and the Plan page's evaluated configurations."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import pandas as pd
import streamlit as st

from core.decompose import get_method
from core.errors import RankscopeError
from core.plan import Plan
from core.profile import task_for
from core.task import Metric, Scores, get_task
from dashboard import cached, plots, state
from dashboard.format import capital, human, points, share
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


def metric_of(scores: Scores, name: str | None = None) -> Metric:
    """The :class:`core.task.Metric` ``name`` (default: the headline) of the task ``scores`` are of."""
    name = name or scores.headline
    return next(m for m in get_task(scores.task).metrics if m.name == name)


def score_metric(where, label: str, scores: Scores, base: Scores | None = None, name: str | None = None, *,
                 baseline_name: str = "baseline", note: str = "") -> None:
    """Metric ``name`` (default: the headline) of ``scores`` as its task shows it, with the change from ``base``'s as
    the delta (percentage points for a fraction; none without ``base``), coloured by the metric's direction (a fall
    is bad only when higher is better). The help says what it measures, on what, and the task's other metrics."""
    metric = metric_of(scores, name)
    value = scores[metric.name]
    others = [f"{m.title} {m.show(scores[m.name])}" for m in get_task(scores.task).metrics
              if m.name in scores.values and m.name != metric.name]
    about = f"{metric.description}; {scores.task} on {scores.samples} evaluation images"
    if base is None:
        where.metric(label, metric.show(value), help=f"{about}; also {', '.join(others)}" if others else about)
        return
    change = value - base[metric.name]
    where.metric(label, metric.show(value), points(change) if metric.fraction else f"{change:+.4f}",
                 delta_color="normal" if metric.higher_is_better else "inverse",
                 help=f"{about}; {baseline_name} {metric.show(base[metric.name])}{note}"
                      + (f". Also: {', '.join(others)}" if others else ""))


def quality_metrics(cols: Sequence, scored: Sequence[Scores], baseline: Sequence[Scores], what: str = "{}", *,
                    loss: str | None = "Loss", baseline_name: str = "baseline", note: str = "") -> None:
    """The headline of each of ``scored`` (``cached.scores``: the evaluation task's, then the fidelity to the dense
    model where that is another task) against ``baseline``'s, one per column, labelled ``what.format(its title)``;
    then the first task's loss, labelled ``loss`` (``None``: not shown). Fills up to ``len(scored) + 1`` of ``cols``."""
    shown = [(what, s, b, None) for s, b in zip(scored, baseline)]
    if loss is not None:
        shown.append((loss, scored[0], baseline[0], get_task(scored[0].task).loss_metric))
    for col, (label, s, b, name) in zip(cols, shown):
        score_metric(col, capital(label.format(metric_of(s, name).title)), s, b, name, baseline_name=baseline_name,
                     note=note)


def evaluation_note(c: Choice) -> str:
    """What the chosen model is scored on: "500 evaluation images of fashion-mnist, by classification", saying when
    the images are the unlabelled fallback photos because no data set rankscope has fits the model."""
    data, full = cached.data_name(c.model, c.arch, c.data), cached.test_set(c.model, c.arch, c.data)
    task = task_for(full).name
    why = " (no labelled data set fits the model: give one on the Model page)" if cached.is_fallback(*c.key, c.data) else ""
    return f"{min(c.samples, len(full))} evaluation images of {data}{why}, by {task}"


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


def planned_against_baseline(c: Choice, plan: Plan, baseline_name: str, note: str = "") -> tuple[Scores, ...]:
    """The model ``plan`` builds against the model as it is (the Attention and Sampling density pages): parameters
    and FLOPs counted on the built model, latency measured at once, peak memory on request, and its scores without
    fine-tune (the headline of each of ``cached.scores``). A bad plan is a message on the page, which then stops.

    Returns the planned model's ``cached.scores``.
    """
    dense = Plan(c.model)
    try:
        base = cached.baseline_counts(*c.key)
        counted = cached.planned_counts(*c.evaluation, plan)
        baseline = cached.scores(*c.evaluation, c.threads, dense)
        planned = cached.scores(*c.evaluation, c.threads, plan)
        dense_ms = cached.planned_latency(*c.evaluation, dense, c.batch, c.threads)
        latency_ms = cached.planned_latency(*c.evaluation, plan, c.batch, c.threads)
    except RankscopeError as err:
        st.error(str(err))
        st.stop()
    cols = st.columns(6)
    cost_metric(cols[0], "Parameters", counted["params"], base["params"], help="counted on the built model")
    cost_metric(cols[1], "FLOPs / sample", counted["flops"], base["flops"], help="counted on the built model; 1 MAC = 2 FLOPs")
    cost_metric(cols[2], "Latency (median)", latency_ms, dense_ms, "{:.2f} ms",
                help=f"whole model at batch {c.batch}, measured; {baseline_name} {dense_ms:.2f} ms")
    with cols[3]:
        dense_mb, planned_mb = memory_on_request(c, [dense, plan]) or (None, None)
        cost_metric(st, "Peak memory", planned_mb, dense_mb, "{:.1f} MB",
                    help="model + input + one forward pass, measured in a fresh process"
                    + ("" if dense_mb is None else f"; {baseline_name} {dense_mb:.1f} MB"))
    quality_metrics(cols[4:], planned, baseline, "{} (no fine-tune)", loss=None, baseline_name=baseline_name, note=note)
    return planned


def configurations(history: list[dict], dense_point: dict, current: int | None, restore: Callable[[int], None],
                   restore_key: str, metrics: Sequence[Metric]) -> None:
    """The configurations evaluated in this session (``state.history``): ``metrics[0]`` (the task's headline) against
    FLOPs and, once measured, latency, with their Pareto fronts (click a point to restore it), their table with every
    one of ``metrics`` (the headlines of ``cached.scores``), and a box to restore one."""
    frame, metric = pd.DataFrame(history), metrics[0]
    left, right = st.columns(2)
    left.plotly_chart(plots.frontier(frame, dense_point, "flops", current, metric=metric), width="stretch",
                      key="frontier_flops", on_select=partial(_picked, "frontier_flops", restore), selection_mode="points")
    if frame["latency_ms"].notna().any():
        right.plotly_chart(plots.frontier(frame, dense_point, "latency_ms", current, metric=metric), width="stretch",
                           key="frontier_latency", on_select=partial(_picked, "frontier_latency", restore),
                           selection_mode="points")
    else:
        right.info(f"Measure latency (button above) to place configurations on a {metric.title}-vs-latency chart.")
    names = [m.name for m in metrics]
    shown = frame.reindex(columns=["id", "layers", "params", "flops", *names, "loss", "latency_ms", "peak_memory_mb",
                                   "full_score"])
    st.dataframe(shown, hide_index=True, width="stretch", column_config={
        **{m.name: score_column(m.title, m) for m in metrics}, "full_score": score_column(f"{metric.title}, full set", metric)})
    labels = {h["id"]: h["label"] for h in history}
    st.selectbox("Restore a configuration", list(labels), format_func=labels.get, index=None,
                 placeholder="or click its point in a chart", key=restore_key,
                 on_change=lambda: restore(st.session_state[restore_key]))


def score_column(title: str, metric: Metric):
    """A table column of ``metric``'s values headed ``title``: a percentage for a fraction."""
    return st.column_config.NumberColumn(title, format="percent" if metric.fraction else "%.4f")


def _picked(chart: str, restore: Callable[[int], None]) -> None:
    """A point of ``chart`` was clicked: restore its configuration (its ``customdata`` is the id)."""
    selected = st.session_state[chart]["selection"]["points"]
    if selected and selected[0].get("customdata") is not None:
        restore(int(selected[0]["customdata"]))


PLAN_SOURCES = {"edit": "The plan under edit (Plan page)", "uniform": "One method on every layer"}


def plan_choice(c: Choice, where, prefix: str, default_method: str) -> Plan:
    """The plan a comparison page shows, chosen in column ``where``: the plan under edit, or ``default_method`` (or the
    one picked) on every layer at a kept share of parameters (``core.plan.starting.make_plan``). The widgets keep
    their values under ``<prefix>_source``, ``<prefix>_method`` and ``<prefix>_kept``; a plan that cannot be made
    stops the page with its message."""
    source = where.radio("Plan", list(PLAN_SOURCES), format_func=PLAN_SOURCES.get,
                         **state.keep(f"{prefix}_source", "edit" if st.session_state.get("plan_for") == c.key else "uniform"))
    if source == "edit":
        plan, problems = state.current_plan(c)
        if problems:
            where.warning(f"{len(problems)} entries of the plan under edit have problems and stay dense (see the Plan "
                          "page).")
        return plan
    methods = [m for m in dict.fromkeys(m for ms in cached.compressible(*c.key)["methods"] for m in ms)
               if not get_method(m).needs_calibration]
    method = where.selectbox("Method", methods,
                             **state.keep(f"{prefix}_method", default_method if default_method in methods else methods[0]))
    kept = where.slider("Keep % of each layer's parameters", 5, 95, step=5, format="%d %%",
                        **state.keep(f"{prefix}_kept", 50))
    try:
        return cached.uniform_plan(*c.key, method, kept / 100)
    except RankscopeError as err:
        st.error(str(err))
        st.stop()

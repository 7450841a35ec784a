"""Plan page: every compressible layer in one editable table (filled by hand, or by an allocator to a budget), the
totals against the baseline, and the score/cost trade-off of every configuration evaluated in this session with
their Pareto front (click a point to restore it)."""
import pandas as pd
import streamlit as st

from core.decompose import get_method
from core.decompose.rank import max_ranks, rank_text, rank_values
from core.errors import RankscopeError
from core.plan import Plan
from core.profile import Cancelled
from core.profile.context import torch_threads
from core.sweep import ALLOCATORS, Target
from dashboard import cached, panels, plots, state
from dashboard.format import capital, human

DENSE = "—"  # the method column's value for a layer left as it is
KINDS = {"flops": "FLOPs", "params": "parameters", "latency": "latency"}  # what an allocator's budget limits
ALLOCATOR_HELP = ("whitened: aa_svd ranks from each layer's Fisher-weighted whitened truncation loss on the calibration "
                  "data, then the post-training steps (sequential fitting, bias and BatchNorm correction, block "
                  "reconstruction), as `rankscope allocate` does by default; "
                  "rankscope: least summed loss increase on the sensitivity sweep (a knapsack); greedy: AIMET's "
                  "compression-ratio search on the sweep; uniform: one rank fraction for every layer; energy: one "
                  "share of singular-value energy for every layer; vbmf: each layer's VBMF rank (ignores the budget); "
                  "spectrum: least summed lost weight energy (a knapsack, no sweep)")
c = state.choice()
st.title("Plan")
try:
    model, cfg = cached.model_and_cfg(*c.key)
    table = cached.compressible(*c.key)
    base = cached.baseline_counts(*c.key)
except RankscopeError as err:
    st.error(str(err))
    st.stop()
if table.empty:
    st.warning(f"No layer of {cfg.name} can be decomposed by any registered method.")
    st.stop()
entries = state.plan_entries(c)
paths = list(table["name"])


# --- editing the plan: callbacks run before the page, so the page always draws the current plan -----
def _fraction() -> float:
    return st.session_state["plan_scale"] / 100


def _edited(edits: dict) -> None:
    """Apply the table's ``edited_rows`` ({row: {column: value}}) to the plan."""
    changes = {paths[int(row)]: {**change, **({"method": None} if change.get("method") == DENSE else {})}
               for row, change in edits.items()}
    state.edit_entries(c, changes, _fraction())


def _slid(path: str, key: str, modes: int) -> None:
    state.set_rank(c, path, [st.session_state.get(f"{key}_{i}", 1) for i in range(modes)])


def _restore(entry_id: int) -> None:
    state.set_plan(next(h for h in state.history() if h["id"] == entry_id)["plan"])


methods = list(dict.fromkeys(m for ms in table["methods"] for m in ms))
left, right = st.columns([1, 2])
left.selectbox("Method for every layer it applies to", methods, index=None, placeholder="choose to set all layers…",
               key="plan_method", on_change=lambda: state.method_everywhere(c, st.session_state["plan_method"], paths, _fraction()))
right.slider("Scale all ranks: % of each layer's full rank", 1, 100, format="%d %%",
             **state.keep("plan_scale", 50, then=lambda: state.scale_ranks(c, _fraction())))

# --- auto: an allocator (core.sweep) fills the plan to a budget ----------------------------------
grid = state.grid(c)
with st.expander("Auto: fill the plan to a budget with an allocator", icon=":material/auto_fix_high:"):
    a1, a2, a3 = st.columns(3)
    kind = a1.radio("Budget on", list(KINDS), format_func=KINDS.get, horizontal=True, **state.keep("auto_kind", "flops"))
    budget = a2.slider("Keep at most, % of the dense model's", 5, 100, step=5, format="%d %%", **state.keep("auto_budget", 50))
    allocator = a3.selectbox("Allocator", list(ALLOCATORS), help=ALLOCATOR_HELP, **state.keep("auto_allocator", "whitened"))
    target = Target(kind, budget / 100)
    st.caption(f"Layers and methods as chosen on the Sensitivity page: {grid.describe()}. Plans are chosen on the "
               "calibration split, never on the evaluation data this page scores them on."
               + (" This allocator needs the sensitivity sweep (of the calibration split): it runs now unless the sweep "
                  "cache has it." if cached.needs_sweep(allocator) else "")
               + f" The layers it picks are timed alone at batch {c.batch} on {c.threads} thread(s) (kept per machine);"
               " under a latency budget a factorization timed no faster than its dense layer is never picked.")
    fill = st.button("Fill the plan", type="primary", icon=":material/auto_fix_high:")
    auto_note = st.empty()  # the allocator's summary, once the plan is known
if fill:
    st.session_state["job"] = "Filling the plan"
    bar = st.progress(0.0, text="Sweeping… (any click cancels; finished rows stay in the sweep cache)") \
        if cached.needs_sweep(allocator) else None
    try:
        result = cached.allocation(c, grid, allocator, target, progress=None if bar is None else (
            lambda done, total: bar.progress(done / total, text=f"sweep row {done} of {total}")))
    except RankscopeError as err:
        st.session_state.pop("job")
        st.error(str(err))
    else:
        st.session_state.pop("job")
        state.set_plan(result.plan)
        st.session_state["auto"] = {"layers": dict(result.plan.layers), "summary": result.summary(), "met": result.met,
                                    "label": f"{allocator}, {KINDS[kind]} ≤ {budget} %"}
        st.rerun()

# --- validate: every problem inline, the layers concerned stay dense until fixed -------------------
plan, problems = state.current_plan(c)
for problem in problems:
    st.error(f"{problem} — this layer stays dense until fixed")
if plan.posttrain is not None:
    steps = plan.posttrain
    s1, s2 = st.columns([4, 1])
    s1.caption(f"Post-training steps on the calibration data, run wherever this plan is applied: sequential fitting "
               f"{'on' if steps.sequential else 'off'}, bias correction {'on' if steps.bias else 'off'}, BatchNorm "
               f"{steps.batchnorm}, block reconstruction {steps.reconstruct} steps a block.")
    s2.button("Drop the steps", on_click=lambda: state.set_posttrain(None), key="plan_drop_posttrain")
try:
    totals = cached.plan_totals(*c.evaluation, plan)
except RankscopeError as err:
    st.error(str(err))
    st.stop()
auto = st.session_state.get("auto")
if auto is not None and auto["layers"] != plan.layers:
    auto = None  # edited since: the allocator's summary no longer describes the plan
if auto is not None:
    (auto_note.success if auto["met"] else auto_note.warning)(f"{auto['label']}: {auto['summary']}")
by_layer = totals.layers.set_index("name")

version = st.session_state["plan_version"]
rows = []
for path, row in table.set_index("name").iterrows():
    e = entries.get(path) or {}
    method, rank, ok = e.get("method") or DENSE, e.get("rank"), path in by_layer.index
    rows.append({
        "layer": path, "type": row.type, "method": method, "rank": rank if isinstance(rank, str) else rank_text(rank),
        "full rank": rank_text(max_ranks(get_method(method), model.get_submodule(path))) if ok else "",
        "params": int(by_layer.loc[path, "params_after"]) if ok else int(row.params),
        "FLOPs": int(by_layer.loc[path, "flops_after"]) if ok else int(row.flops),
        "FLOPs kept": by_layer.loc[path, "flops_after"] / max(by_layer.loc[path, "flops_before"], 1) if ok else 1.0,
    })
editor_key = f"plan_editor_{version}"
st.data_editor(
    pd.DataFrame(rows), key=editor_key, hide_index=True, width="stretch",
    disabled=["layer", "type", "full rank", "params", "FLOPs", "FLOPs kept"],
    column_config={
        "method": st.column_config.SelectboxColumn("method", options=[DENSE, *methods], required=True,
                                                   help=f"{DENSE} keeps the layer dense"),
        "rank": st.column_config.TextColumn("rank", help="an integer, or one per mode: 8x4 (Tucker: input x output)"),
        "FLOPs kept": st.column_config.ProgressColumn("FLOPs kept", min_value=0.0, max_value=1.0, format="percent"),
    },
)
if st.session_state[editor_key]["edited_rows"]:  # applied here, not in a callback, so a scripted edit works too
    _edited(st.session_state[editor_key]["edited_rows"])
    st.rerun()
with st.expander("Rank sliders, one per planned layer"):
    for path in by_layer.index:  # the plan's decompositions
        entry = plan.layers[path]
        tops = max_ranks(get_method(entry.method), model.get_submodule(path))
        key = f"plan_slider_{version}_{path}"
        cols = st.columns(len(tops))
        for i, (top, value) in enumerate(zip(tops, rank_values(entry.rank))):
            if top == 1:  # a slider needs a range: a mode of size one has nothing to choose
                cols[i].caption(f"{path} ({entry.method}) mode {i + 1}: full rank 1")
                continue
            cols[i].slider(f"{path} ({entry.method})" + (f" mode {i + 1}" if len(tops) > 1 else ""), 1, top, value,
                           key=f"{key}_{i}", on_change=_slid, args=(path, key, len(tops)))

others = {**{p: e for p, e in plan.layers.items() if p not in by_layer.index}, **plan.groups}
if others:
    st.caption("Attention variants (Attention page) and channel-group densities (Sampling density page) in the plan; "
               "with them, the totals below are counted on the built model.")
    st.dataframe(pd.DataFrame([{"layer or group": k, "method": e.method + (f" {e.variant}" if e.variant else ""),
                                "rank": rank_text(e.rank), "density": e.density,
                                "options": ", ".join(f"{o}={v}" for o, v in e.options.items())} for k, e in others.items()]),
                 hide_index=True, width="stretch")
    if st.button("Remove them from the plan"):
        state.remove_other_kinds(c)
        st.rerun()

# --- totals ---------------------------------------------------------------------------------
try:
    baseline = cached.scores(*c.evaluation, c.threads, Plan(c.model))
    result = cached.scores(*c.evaluation, c.threads, plan)
except RankscopeError as err:
    st.error(str(err))
    st.stop()
metrics = [panels.metric_of(s) for s in baseline]  # the headline of each task: the evaluation data's, then fidelity
headline = metrics[0]
hist = state.history()
entry = next((h for h in hist if h["plan"] == plan and h["evaluation"] == c.evaluation), None)
if entry is None:
    entry = {"id": len(hist) + 1, "plan": plan, "evaluation": c.evaluation, "layers": len(plan.layers) + len(plan.groups),
             "params": totals.params, "flops": totals.flops, **{s.headline: s.score for s in result}, "loss": result[0].loss,
             "latency_ms": None, "peak_memory_mb": None, "full_score": None}
    entry["label"] = f"#{entry['id']}: {entry['layers']} entries, {human(totals.params)} params" + (
        f" ({auto['label']})" if auto is not None else "")
    hist.append(entry)

st.subheader("Planned model against the baseline")
cols = st.columns(7)
how = "counted on the built model" if totals.counted else "from each method's cost(), nothing rebuilt"
panels.cost_metric(cols[0], "Parameters", totals.params, base["params"], help=f"baseline {human(base['params'])}; {how}")
panels.cost_metric(cols[1], "FLOPs / sample", totals.flops, base["flops"], help=f"baseline {human(base['flops'])}; 1 MAC = 2 FLOPs")
costs_key = (c.key, c.batch, c.threads, c.device)
dense_costs = st.session_state.get("dense_costs", {}).get(costs_key)
measured = entry["latency_ms"] is not None and dense_costs is not None
latency, memory = (entry["latency_ms"], entry["peak_memory_mb"]) if measured else (None, None)
dense_ms, dense_mb = (dense_costs["latency_ms"], dense_costs["peak_memory_mb"]) if measured else (None, None)
panels.cost_metric(cols[2], "Latency (median)", latency, dense_ms, "{:.2f} ms",
                   help=f"not measured until you click the button below; batch {c.batch}, {c.threads} thread(s), {c.device}")
panels.cost_metric(cols[3], "Peak memory", memory, dense_mb, "{:.1f} MB", help="model + input + forward pass, measured (see the Model page)")
panels.quality_metrics(cols[4:], result, baseline)
if entry["full_score"] is not None:
    st.caption(f"Full evaluation set: {headline.title} {headline.show(entry['full_score'])} on {entry['full_samples']} images.")

# --- longer work: progress bar, and any click (the Cancel button included) stops it ----------------
job = st.session_state.pop("job", None)
if job:
    st.warning(f"{job} was cancelled.")
b1, b2, b3 = st.columns(3)
measure = b1.button("Measure latency and peak memory")
full = b2.button(f"{capital(headline.title)} on the full evaluation set")
b3.button("Cancel", help="stops a running measurement (any other click does too)")
if measure:
    st.session_state["job"] = "Measuring latency and peak memory"
    bar = st.progress(0.0, text="Timing the dense model and measuring its peak memory…")
    st.session_state.setdefault("dense_costs", {})[costs_key] = cached.planned_costs(*c.evaluation, Plan(c.model), c.batch, c.threads)
    bar.progress(0.5, text="Timing the planned model and measuring its peak memory…")
    entry.update(cached.planned_costs(*c.evaluation, plan, c.batch, c.threads))
    st.session_state.pop("job")
    st.rerun()
if full:
    st.session_state["job"] = f"Full-set {headline.title}"
    full_set = cached.test_set(c.model, c.arch, c.data)
    bar = st.progress(0.0, text=f"Scoring {len(full_set)} images…")
    try:
        with torch_threads(c.threads):
            scored = cached.plan_evaluator(c.model, c.arch, c.data, len(full_set), c.device).evaluate(
                plan, progress=lambda done, total: bar.progress(done / total, text=f"batch {done} of {total}"))
    except Cancelled as err:
        st.warning(str(err))
    else:
        entry["full_score"], entry["full_samples"] = scored.score, scored.samples
        st.session_state.pop("job")
        st.rerun()

# --- charts ---------------------------------------------------------------------------------
ratios = [("parameters", totals.params / base["params"]), ("FLOPs", totals.flops / base["flops"])]
if measured:
    ratios += [("latency", latency / dense_ms), ("peak memory", memory / dense_mb)]
ratios.append((headline.title, result[0].score / baseline[0].score if baseline[0].score else 1.0))
left, right = st.columns(2)
left.plotly_chart(plots.totals(pd.DataFrame(ratios, columns=["what", "ratio"])), width="stretch")
right.plotly_chart(plots.layer_costs(totals.layers), width="stretch")

st.subheader("FLOPs saved against time saved, per layer")
planned = {name: (e.method, e.rank) for name, e in plan.layers.items() if name in set(totals.layers["name"])}
if not planned:
    st.info("No decomposed layer in the plan yet.")
elif st.toggle(f"Time each planned layer alone, dense and as planned (batch {c.batch}, {c.threads} thread(s))",
               key="plan_layer_speed"):
    try:
        timed = cached.layer_times(c).table(planned)
    except RankscopeError as err:
        st.error(str(err))
    else:
        speed = timed.merge(totals.layers[["name", "flops_before", "flops_after"]], on="name")
        speed["saved_flops"] = 1 - speed["flops_after"] / speed["flops_before"]
        slower = speed.loc[speed["saved"] <= 0, "name"].tolist()
        if slower:
            st.warning(f"Timed no faster than dense at this setting: {', '.join(slower)}. A latency budget would keep "
                       "these layers dense.")
        st.plotly_chart(plots.layer_speed(speed), width="stretch")
        st.dataframe(speed[["name", "method", "rank", "saved_flops", "saved", "dense_ms", "planned_ms"]], hide_index=True,
                     width="stretch", column_config={
                         "saved_flops": st.column_config.NumberColumn("FLOPs saved", format="percent"),
                         "saved": st.column_config.NumberColumn("time saved", format="percent"),
                         "dense_ms": st.column_config.NumberColumn("dense ms", format="%.3f"),
                         "planned_ms": st.column_config.NumberColumn("planned ms", format="%.3f")})

st.subheader("Configurations evaluated in this session")
if hist:
    dense_point = {"flops": base["flops"], headline.name: baseline[0].score,
                   "latency_ms": dense_costs["latency_ms"] if dense_costs else None}
    panels.configurations(hist, dense_point, entry["id"], _restore, f"plan_restore_{version}", metrics)

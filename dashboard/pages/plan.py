"""Plan page: every compressible layer in one editable table (filled by hand, or by an allocator to a budget), the
totals against the baseline, and the accuracy/cost trade-off of every configuration evaluated in this session with
their Pareto front (click a point to restore it)."""
import pandas as pd
import streamlit as st

from core.decompose import applicable_methods, get_method
from core.errors import RankscopeError
from core.layer_eval import swapped_copy
from core.layer_study import max_ranks, rank_at
from core.plan import Plan, loads_plan, plan_rank
from core.plan_cost import plan_cost
from core.profile import Cancelled, example_input, measure_latency, measure_memory
from core.profile.accuracy import evaluate
from core.sweep import ALLOCATORS, Problem, Target, allocate, layer_methods
from core.sweep.allocate import NEEDS_TABLE
from dashboard import plots, state
from dashboard.format import human, percent, points, rank_text, share

DENSE = "—"  # the method column's value for a layer left as it is
KINDS = {"flops": "FLOPs", "params": "parameters", "latency": "latency"}  # what an allocator's budget limits
ALLOCATOR_HELP = ("rankscope: least summed loss increase on the sensitivity sweep (a knapsack); greedy: AIMET's "
                  "compression-ratio search on the sweep; uniform: one rank fraction for every layer; energy: one "
                  "share of singular-value energy for every layer; vbmf: each layer's VBMF rank (ignores the budget)")
c = state.choice()
st.title("Plan")
try:
    model, cfg = state.model_and_cfg(*c.key)
    table = state.compressible(*c.key)
    sites = state.sites(*c.key)
    base = state.baseline_counts(*c.key)
    data = state.data_name(c.model, c.arch, c.data)
except RankscopeError as err:
    st.error(str(err))
    st.stop()
if table.empty:
    st.warning(f"No layer of {cfg.name} can be decomposed by any registered method.")
    st.stop()
entries = state.plan_entries(c)
paths = list(table["name"])


# --- editing the plan: callbacks run before the page, so the page always draws the current plan -----
def _rank_for(path: str, method: str, fraction: float) -> int | list[int] | None:
    """``fraction`` of the layer's full rank for ``method``; ``None`` where the method does not apply (validation says why)."""
    module = model.get_submodule(path)
    if get_method(method).check(module) is not None:
        return None
    return plan_rank(rank_at(get_method(method), module, fraction))


def _scale_all() -> None:
    fraction = st.session_state["plan_scale"] / 100
    state.set_plan_entries({p: {**e, "rank": _rank_for(p, e["method"], fraction)}
                            if e.get("method") and state.is_decomposition(e["method"]) else e
                            for p, e in state.plan_entries(c).items()})


def _method_for_all() -> None:
    method, fraction = st.session_state["plan_method"], st.session_state["plan_scale"] / 100
    new = dict(state.plan_entries(c))
    for path in paths:
        if method in applicable_methods(model.get_submodule(path)):
            new[path] = {**new.get(path, {}), "method": method, "rank": _rank_for(path, method, fraction)}
    state.set_plan_entries(new)


def _parse_rank(text, arity: int):
    """'8' -> 8, '8x4' or '8, 4' -> [8, 4] (a list whenever the method takes several); other text is kept
    as typed, for validation to name."""
    parts = [p for p in str(text).replace("x", ",").replace(" ", ",").split(",") if p]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        return str(text)
    return values[0] if len(values) == 1 and arity == 1 else values


def _edited(edits: dict) -> None:
    """Apply the table's ``edited_rows`` ({row: {column: value}}) to the plan."""
    new = dict(state.plan_entries(c))
    for row, change in edits.items():
        path = paths[int(row)]
        entry = dict(new.get(path) or {"method": None, "rank": None, "density": None})
        if "method" in change:
            entry["method"] = None if change["method"] in (None, DENSE) else change["method"]
            if entry["method"]:
                entry["rank"] = _rank_for(path, entry["method"], st.session_state["plan_scale"] / 100)
        if "rank" in change and entry["method"]:
            entry["rank"] = _parse_rank(change["rank"], get_method(entry["method"]).rank_arity)
        if "density" in change:
            entry["density"] = change["density"]
        new[path] = entry
    state.set_plan_entries(new)


def _slid(path: str, key: str, modes: int) -> None:
    values = [st.session_state.get(f"{key}_{i}", 1) for i in range(modes)]
    new = dict(state.plan_entries(c))
    new[path] = {**new[path], "rank": values[0] if modes == 1 else values}
    st.session_state["plan_entries"] = new  # same widgets: no re-seeding needed


def _restore(entry_id: int) -> None:
    plan = loads_plan(next(h for h in state.history() if h["id"] == entry_id)["plan"])
    state.set_plan(plan)


def _clicked(key: str) -> None:
    selected = st.session_state[key]["selection"]["points"]
    if selected and selected[0].get("customdata") is not None:
        _restore(int(selected[0]["customdata"]))


methods = [m for m in dict.fromkeys(m for ms in table["methods"] for m in ms) if data or not get_method(m).needs_calibration]
left, right = st.columns([1, 2])
left.selectbox("Method for every layer it applies to", methods, index=None, placeholder="choose to set all layers…",
               key="plan_method", on_change=_method_for_all)
right.slider("Scale all ranks: % of each layer's full rank", 1, 100, format="%d %%", **state.keep("plan_scale", 50, then=_scale_all))

# --- auto: an allocator (core.sweep) fills the plan to a budget ----------------------------------
grid = state.grid(c)
with st.expander("Auto: fill the plan to a budget with an allocator", icon=":material/auto_fix_high:"):
    a1, a2, a3 = st.columns(3)
    kind = a1.radio("Budget on", list(KINDS), format_func=KINDS.get, horizontal=True, **state.keep("auto_kind", "flops"))
    budget = a2.slider("Keep at most, % of the dense model's", 5, 100, step=5, format="%d %%", **state.keep("auto_budget", 50))
    allocator = a3.selectbox("Allocator", list(ALLOCATORS), help=ALLOCATOR_HELP, **state.keep("auto_allocator", "rankscope"))
    swept_first = allocator in NEEDS_TABLE or kind == "latency"
    st.caption(f"Layers and methods as chosen on the Sensitivity page: {grid.describe()}."
               + (" This allocator needs the sensitivity sweep" + (" with every point timed" if kind == "latency" else "")
                  + ": it runs now unless the sweep cache has it." if swept_first else ""))
    fill = st.button("Fill the plan", type="primary", icon=":material/auto_fix_high:")
    auto_note = st.empty()  # the allocator's summary, once the plan is known
if fill:
    st.session_state["job"] = "Filling the plan"
    try:
        table = None
        if swept_first:
            bar = st.progress(0.0, text="Sweeping… (any click cancels; finished rows stay in the sweep cache)")
            table = state.run_sweep(c, grid, latency=kind == "latency",
                                    progress=lambda done, total: bar.progress(done / total, text=f"sweep row {done} of {total}"))
        layers = None if table is not None else layer_methods(model, list(grid.layers) or None, list(grid.methods) or None)
        result = allocate(allocator, Problem(model, c.model, example_input(cfg, 1), Target(kind, budget / 100), table, layers))
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
decompositions = Plan(c.model, {p: e for p, e in plan.layers.items() if state.is_decomposition(e.method)})
cost = plan_cost(model, decompositions, sites, base["params"], base["flops"])
built_whole = bool(plan.groups) or len(decompositions.layers) < len(plan.layers)  # attention variants or channel groups
if built_whole:  # their cost is counted on the built model, not priced from cost()
    try:
        counted = state.planned_counts(c.model, c.arch, c.data, plan.dumps())
    except RankscopeError as err:
        st.error(str(err))
        st.stop()
    params, flops = counted["params"], counted["flops"]
else:
    params, flops = cost.params, cost.flops
auto = st.session_state.get("auto")
if auto is not None and auto["layers"] != plan.layers:
    auto = None  # edited since: the allocator's summary no longer describes the plan
if auto is not None:
    (auto_note.success if auto["met"] else auto_note.warning)(f"{auto['label']}: {auto['summary']}")
by_layer = cost.layers.set_index("name")

version = st.session_state["plan_version"]
rows = []
for path, row in table.set_index("name").iterrows():
    e = entries.get(path) or {}
    method = e.get("method") or DENSE
    ok = path in by_layer.index
    rows.append({
        "layer": path, "type": row.type, "method": method, "rank": rank_text(e["rank"]) if method != DENSE else "",
        "density": e.get("density"),
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
        "density": st.column_config.NumberColumn("density", min_value=0.0, max_value=1.0, step=0.05,
                                                 help="fraction of weights kept, for methods that prune (optional)"),
        "FLOPs kept": st.column_config.ProgressColumn("FLOPs kept", min_value=0.0, max_value=1.0, format="percent"),
    },
)
if st.session_state[editor_key]["edited_rows"]:  # applied here, not in a callback, so a scripted edit works too
    _edited(st.session_state[editor_key]["edited_rows"])
    st.rerun()
with st.expander("Rank sliders, one per planned layer"):
    for path, entry in decompositions.layers.items():
        method = get_method(entry.method)
        tops = max_ranks(method, model.get_submodule(path))
        values = [entry.rank] if method.rank_arity == 1 else list(entry.rank)
        key = f"plan_slider_{version}_{path}"
        cols = st.columns(len(tops))
        for i, (top, value) in enumerate(zip(tops, values)):
            if top == 1:  # a slider needs a range: a mode of size one has nothing to choose
                cols[i].caption(f"{path} ({entry.method}) mode {i + 1}: full rank 1")
                continue
            cols[i].slider(f"{path} ({entry.method})" + (f" mode {i + 1}" if len(tops) > 1 else ""), 1, top, int(value),
                           key=f"{key}_{i}", on_change=_slid, args=(path, key, len(tops)))

others = {**{p: e for p, e in plan.layers.items() if not state.is_decomposition(e.method)}, **plan.groups}
if others:
    st.caption("Attention variants (Attention page) and channel-group densities (Sampling density page) in the plan; "
               "with them, the totals below are counted on the built model.")
    st.dataframe(pd.DataFrame([{"layer or group": k, "method": e.method + (f" {e.variant}" if e.variant else ""),
                                "rank": rank_text(e.rank) if e.rank is not None else "", "density": e.density,
                                "options": ", ".join(f"{o}={v}" for o, v in e.options.items())} for k, e in others.items()]),
                 hide_index=True, width="stretch")
    if st.button("Remove them from the plan"):
        state.set_plan_groups({})
        state.set_plan_entries({p: e for p, e in entries.items() if not e.get("method") or state.is_decomposition(e["method"])})
        st.rerun()

# --- totals ---------------------------------------------------------------------------------
try:
    baseline = state.accuracy(c.model, c.arch, c.data, c.samples, c.device, c.threads, Plan(c.model).dumps())
    result = state.accuracy(c.model, c.arch, c.data, c.samples, c.device, c.threads, plan.dumps())
except RankscopeError as err:
    st.error(str(err))
    st.stop()
hist = state.history()
entry = next((h for h in hist if h["plan"] == plan.dumps()), None)
if entry is None and result is not None:
    entry = {"id": len(hist) + 1, "plan": plan.dumps(), "layers": len(plan.layers) + len(plan.groups), "params": params, "flops": flops,
             "accuracy": result["accuracy"], "loss": result["loss"], "latency_ms": None, "peak_memory_mb": None,
             "full_accuracy": None}
    entry["label"] = f"#{entry['id']}: {entry['layers']} entries, {human(params)} params" + (
        f" ({auto['label']})" if auto is not None else "")
    hist.append(entry)

st.subheader("Planned model against the baseline")
cols = st.columns(6)
how = "counted on the built model" if built_whole else "from each method's cost(), nothing rebuilt"
cols[0].metric("Parameters", human(params), share(params, base["params"]), delta_color="off", delta_arrow="off",
               help=f"baseline {human(base['params'])}; {how}")
cols[1].metric("FLOPs / image", human(flops), share(flops, base["flops"]), delta_color="off", delta_arrow="off",
               help=f"baseline {human(base['flops'])}; 1 MAC = 2 FLOPs")
if result is not None:
    cols[2].metric("Accuracy", percent(result["accuracy"]), points(result["accuracy"] - baseline["accuracy"]),
                   help=f"top-1 on {result['samples']} evaluation images; baseline {percent(baseline['accuracy'])}")
    cols[3].metric("Loss", f"{result['loss']:.4f}", f"{result['loss'] - baseline['loss']:+.4f}", delta_color="inverse",
                   help=f"mean cross-entropy; baseline {baseline['loss']:.4f}")
else:
    cols[2].metric("Accuracy", "—", help="no evaluation data for this model")
dense_costs = st.session_state.get("dense_costs", {}).get((c.key, c.batch, c.threads, c.device))
measured = entry is not None and entry["latency_ms"] is not None and dense_costs
cols[4].metric("Latency (median)", f"{entry['latency_ms']:.2f} ms" if measured else "—",
               share(entry["latency_ms"], dense_costs["latency_ms"]) if measured else None, delta_color="off", delta_arrow="off",
               help=f"not measured until you click the button below; batch {c.batch}, {c.threads} thread(s), {c.device}")
cols[5].metric("Peak memory", f"{entry['peak_memory_mb']:.1f} MB" if measured else "—",
               share(entry["peak_memory_mb"], dense_costs["peak_memory_mb"]) if measured else None, delta_color="off",
               delta_arrow="off", help="model + input + forward pass, measured (see the Model page)")
if entry is not None and entry["full_accuracy"] is not None:
    st.caption(f"Full test set: accuracy {percent(entry['full_accuracy'])} on {entry['full_samples']} images.")

# --- longer work: progress bar, and any click (the Cancel button included) stops it ----------------
job = st.session_state.pop("job", None)
if job:
    st.warning(f"{job} was cancelled.")
b1, b2, b3 = st.columns(3)
measure = b1.button("Measure latency and peak memory", disabled=entry is None)
full = b2.button("Accuracy on the full test set", disabled=entry is None or result is None)
b3.button("Cancel", help="stops a running measurement (any other click does too)")


def _replacements() -> dict:
    return {p: state.replacement(c.model, c.arch, c.data, p, e.method, state.rank_key(e.rank)) for p, e in plan.layers.items()}


if measure:
    st.session_state["job"] = "Measuring latency and peak memory"
    bar = st.progress(0.0, text="Building the planned model…")
    planned = state.planned_model(c.model, c.arch, c.data, plan.dumps()) if built_whole else swapped_copy(model, _replacements())
    x = example_input(cfg, c.batch)
    key = (c.key, c.batch, c.threads, c.device)
    if key not in st.session_state.setdefault("dense_costs", {}):
        bar.progress(0.2, text="Timing the dense model…")
        lat = measure_latency(model, x, threads=c.threads, device=c.device)
        bar.progress(0.4, text="Measuring the dense model's peak memory…")
        st.session_state["dense_costs"][key] = {"latency_ms": lat.median_ms,
                                                "peak_memory_mb": measure_memory(model, x, threads=c.threads, device=c.device).peak_mb}
    bar.progress(0.6, text="Timing the planned model…")
    entry["latency_ms"] = measure_latency(planned, x, threads=c.threads, device=c.device).median_ms
    bar.progress(0.8, text="Measuring the planned model's peak memory…")
    entry["peak_memory_mb"] = measure_memory(planned, x, threads=c.threads, device=c.device).peak_mb
    bar.progress(1.0, text="Done")
    st.session_state.pop("job")
    st.rerun()
if full:
    st.session_state["job"] = "Full-test-set accuracy"
    full_set = state.test_set(c.model, c.arch, c.data)
    ev = state.evaluator(c.model, c.arch, c.data, len(full_set), c.device)
    bar = st.progress(0.0, text=f"Scoring {len(full_set)} images…")
    try:
        tick = lambda done, total: bar.progress(done / total, text=f"batch {done} of {total}")  # noqa: E731
        if built_whole:
            scored = evaluate(state.planned_model(c.model, c.arch, c.data, plan.dumps()), full_set, device=c.device)
        else:
            scored = ev.evaluate(_replacements(), progress=tick)
    except Cancelled as err:
        st.warning(str(err))
    else:
        entry["full_accuracy"], entry["full_samples"] = scored.top1, scored.samples
        st.session_state.pop("job")
        st.rerun()

# --- charts ---------------------------------------------------------------------------------
totals = [("parameters", params / base["params"]), ("FLOPs", flops / base["flops"])]
if measured:
    totals += [("latency", entry["latency_ms"] / dense_costs["latency_ms"]),
               ("peak memory", entry["peak_memory_mb"] / dense_costs["peak_memory_mb"])]
if result is not None:
    totals.append(("accuracy", result["accuracy"] / baseline["accuracy"] if baseline["accuracy"] else 1.0))
left, right = st.columns(2)
left.plotly_chart(plots.totals(pd.DataFrame(totals, columns=["what", "ratio"])), width="stretch")
right.plotly_chart(plots.layer_costs(cost.layers), width="stretch")

st.subheader("Configurations evaluated in this session")
if hist:
    frame = pd.DataFrame(hist)
    dense_point = {"flops": base["flops"], "accuracy": baseline["accuracy"] if baseline else None,
                   "latency_ms": dense_costs["latency_ms"] if dense_costs else None}
    current = entry["id"] if entry is not None else None
    left, right = st.columns(2)
    left.plotly_chart(plots.frontier(frame, dense_point, "flops", current), width="stretch", key="frontier_flops",
                      on_select=lambda: _clicked("frontier_flops"), selection_mode="points")
    if frame["latency_ms"].notna().any():
        right.plotly_chart(plots.frontier(frame, dense_point, "latency_ms", current), width="stretch", key="frontier_latency",
                           on_select=lambda: _clicked("frontier_latency"), selection_mode="points")
    else:
        right.info("Measure latency (button above) to place configurations on an accuracy-vs-latency chart.")
    shown = frame[["id", "layers", "params", "flops", "accuracy", "loss", "latency_ms", "peak_memory_mb", "full_accuracy"]]
    st.dataframe(shown, hide_index=True, width="stretch", column_config={
        "accuracy": st.column_config.NumberColumn("accuracy", format="percent"),
        "full_accuracy": st.column_config.NumberColumn("full test set", format="percent")})
    labels = {h["id"]: h["label"] for h in hist}
    st.selectbox("Restore a configuration", list(labels), format_func=labels.get, index=None,
                 placeholder="or click its point in a chart", key=f"plan_restore_{version}",
                 on_change=lambda: _restore(st.session_state[f"plan_restore_{version}"]))

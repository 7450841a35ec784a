"""Layer explorer: one layer, one method, a rank; its spectrum, error, cost and the model's accuracy with only it changed."""
import streamlit as st

from core.decompose import get_method
from core.errors import RankscopeError
from core.layer_study import as_rank, default_method, max_ranks, mode_names
from core.plan import LayerEntry, Plan, plan_rank
from core.plan_cost import entry_cost
from dashboard import plots, state
from dashboard.format import human, percent, points, rank_text, share

c = state.choice()
st.title("Layer explorer")
try:
    model, cfg = state.model_and_cfg(*c.key)
    table = state.compressible(*c.key)
    latencies = state.layer_latencies(c.model, c.arch, c.batch, c.threads)
    data = state.data_name(c.model, c.arch, c.data)
except RankscopeError as err:
    st.error(str(err))
    st.stop()
st.caption(f"{cfg.name} · accuracy on {c.samples} evaluation images · latency at batch {c.batch}, {c.threads} thread(s)")
skipped = state.layers(*c.key).query("skipped != ''")
if len(skipped):
    with st.expander(f"{len(skipped)} layer(s) no method applies to"):
        st.dataframe(skipped[["name", "type", "skipped"]], hide_index=True, width="stretch")
if table.empty:
    st.warning(f"No layer of {cfg.name} can be decomposed by any registered method.")
    st.stop()

rows = table.set_index("name")
labels = {
    p: f"{p} · {r.type} {'×'.join(map(str, r.weight_shape))} · {100 * r.flops_share:.1f} % of FLOPs · {latencies[p]:.3f} ms"
    for p, r in rows.iterrows()
}
if st.session_state.get("lx_layer") not in labels:
    st.session_state["lx_layer"] = str(rows["flops_share"].idxmax())  # start where the FLOPs are
path = st.selectbox("Layer (type to search)", list(labels), format_func=labels.get, **state.keep("lx_layer"))
module = model.get_submodule(path)

methods = [m for m in rows.loc[path, "methods"] if data or not get_method(m).needs_calibration]
left, right = st.columns([1, 2])
method_key = f"lx_method_{path}"
if st.session_state.get(method_key) not in methods:
    st.session_state[method_key] = default_method(module) or methods[0]
method_name = left.selectbox("Method", methods, **state.keep(method_key))
if len(methods) < len(rows.loc[path, "methods"]):
    left.caption("Data-aware methods are hidden: this model has no evaluation data.")
method = get_method(method_name)
values = []
for i, (mode, top) in enumerate(zip(mode_names(method), max_ranks(method, module))):
    if top == 1:  # a slider needs a range: a mode of size one has nothing to choose
        right.caption(f"{mode}: full rank 1")
        values.append(1)
        continue
    key = f"lx_rank_{path}_{method_name}_{i}"
    st.session_state[key] = min(max(int(st.session_state.get(key, max(1, top // 2))), 1), top)
    values.append(right.slider(f"{mode} (full rank {top})", 1, top, **state.keep(key)))
rank = as_rank(method, values)

try:
    built = state.replacement(c.model, c.arch, c.data, path, method_name, rank)
except RankscopeError as err:
    st.error(str(err))
    st.stop()
site = state.sites(*c.key)[path]
dense, new = entry_cost(module, None, site), entry_cost(module, LayerEntry(method_name, rank), site)
base = state.baseline_counts(*c.key)
dense_ms = latencies[path]
new_ms = state.layer_latency(c.model, c.arch, c.data, path, method_name, rank, c.batch, c.threads)

st.subheader(f"{path} with {method_name} at rank {rank_text(rank)}")
cols = st.columns(3)
cols[0].metric("Layer parameters", human(new.params), share(new.params, dense.params, "dense layer"), delta_color="off",
               delta_arrow="off", help=f"dense layer: {human(dense.params)}")
cols[1].metric("Layer FLOPs / image", human(new.flops), share(new.flops, dense.flops, "dense layer"), delta_color="off",
               delta_arrow="off", help=f"dense layer: {human(dense.flops)}; from the method's cost(), 1 MAC = 2 FLOPs")
cols[2].metric("Layer latency (measured)", f"{new_ms:.3f} ms", share(new_ms, dense_ms, "dense layer"), delta_color="off",
               delta_arrow="off", help=f"median of timed forwards of this layer alone at batch {c.batch}; dense: {dense_ms:.3f} ms")

model_params = base["params"] - dense.params + new.params
model_flops = base["flops"] - dense.flops + new.flops
plan_text = Plan(c.model, {path: LayerEntry(method_name, plan_rank(rank))}).dumps()
try:
    baseline = state.accuracy(c.model, c.arch, c.data, c.samples, c.device, c.threads, Plan(c.model).dumps())
    changed = state.accuracy(c.model, c.arch, c.data, c.samples, c.device, c.threads, plan_text)
except RankscopeError as err:
    st.error(str(err))
    st.stop()
cols = st.columns(4)
if changed is not None:
    cols[0].metric("Model accuracy (only this layer changed)", percent(changed["accuracy"]),
                   points(changed["accuracy"] - baseline["accuracy"]),
                   help=f"top-1 on {changed['samples']} evaluation images; baseline {percent(baseline['accuracy'])}")
    cols[1].metric("Model loss", f"{changed['loss']:.4f}", f"{changed['loss'] - baseline['loss']:+.4f}", delta_color="inverse",
                   help=f"mean cross-entropy; baseline {baseline['loss']:.4f}")
else:
    cols[0].metric("Model accuracy (only this layer changed)", "—", help="no evaluation data for this model")
cols[2].metric("Model parameters", human(model_params), share(model_params, base["params"]), delta_color="off", delta_arrow="off")
cols[3].metric("Model FLOPs / image", human(model_flops), share(model_flops, base["flops"]), delta_color="off", delta_arrow="off")
if st.button("Put this layer's choice into the plan", help="the Plan page edits every layer together"):
    entries = dict(state.plan_entries(c))
    entries[path] = state.session_entry(LayerEntry(method_name, plan_rank(rank)))
    state.set_plan_entries(entries)
    st.toast(f"{path}: {method_name} rank {rank_text(rank)} is in the plan")

spectra = state.spectra(c.model, c.arch, c.data, path, method_name)
if spectra:
    st.plotly_chart(plots.spectrum(spectra, values), width="stretch")
else:
    st.info(f"{method_name} has no singular values to show (its factors are fitted per rank); the error curve below still applies.")
curve = state.error_curve(c.model, c.arch, c.data, c.samples, path, method_name)
error = state.layer_error(c.model, c.arch, c.data, c.samples, path, method_name, rank)
st.plotly_chart(plots.error_curve(curve, dense.params, (rank_text(rank), new.params, error)), width="stretch")

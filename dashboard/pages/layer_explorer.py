"""Layer explorer: one layer, one method, a rank; its spectrum, error, cost and the model's scores with only it changed."""
import streamlit as st

from core.decompose import get_method
from core.errors import RankscopeError
from core.decompose.rank import as_rank, max_ranks, mode_names, rank_text
from core.layers.study import default_method
from core.plan import LayerEntry, Plan
from core.plan.cost import entry_cost
from dashboard import cached, panels, plots, state
from dashboard.format import human

c = state.choice()
st.title("Layer explorer")
try:
    model, cfg = cached.model_and_cfg(*c.key)
    table = cached.compressible(*c.key)
    latencies = cached.layer_latencies(c.model, c.arch, c.batch, c.threads)
    scored_on = panels.evaluation_note(c)
except RankscopeError as err:
    st.error(str(err))
    st.stop()
st.caption(f"{cfg.name} · scored on {scored_on} · latency at batch {c.batch}, {c.threads} thread(s)")
skipped = cached.layers(*c.key).query("skipped != ''")
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

methods = list(rows.loc[path, "methods"])
left, right = st.columns([1, 2])
method_key = f"lx_method_{path}"
if st.session_state.get(method_key) not in methods:
    st.session_state[method_key] = default_method(module) or methods[0]
method_name = left.selectbox("Method", methods, **state.keep(method_key))
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
    built = cached.replacement(c.model, c.arch, c.data, path, method_name, rank)
except RankscopeError as err:
    st.error(str(err))
    st.stop()
site = cached.sites(*c.key)[path]
dense, new = entry_cost(module, None, site), entry_cost(module, LayerEntry(method_name, rank), site)
base = cached.baseline_counts(*c.key)
dense_ms = latencies[path]
new_ms = cached.layer_latency(c.model, c.arch, c.data, path, method_name, rank, c.batch, c.threads)

st.subheader(f"{path} with {method_name} at rank {rank_text(rank)}")
cols = st.columns(3)
panels.cost_metric(cols[0], "Layer parameters", new.params, dense.params, of="dense layer", help=f"dense layer: {human(dense.params)}")
panels.cost_metric(cols[1], "Layer FLOPs / sample", new.flops, dense.flops, of="dense layer",
                   help=f"dense layer: {human(dense.flops)}; from the method's cost(), 1 MAC = 2 FLOPs")
panels.cost_metric(cols[2], "Layer latency (measured)", new_ms, dense_ms, "{:.3f} ms", of="dense layer",
                   help=f"median of timed forwards of this layer alone at batch {c.batch}; dense: {dense_ms:.3f} ms")

model_params = base["params"] - dense.params + new.params
model_flops = base["flops"] - dense.flops + new.flops
try:
    baseline = cached.scores(*c.evaluation, c.threads, Plan(c.model))
    changed = cached.scores(*c.evaluation, c.threads, Plan(c.model, {path: LayerEntry(method_name, rank)}))
except RankscopeError as err:
    st.error(str(err))
    st.stop()
cols = st.columns(5)
panels.cost_metric(cols[0], "Model parameters", model_params, base["params"])
panels.cost_metric(cols[1], "Model FLOPs / sample", model_flops, base["flops"])
panels.quality_metrics(cols[2:], changed, baseline, "Model {} (only this layer changed)", loss="Model loss")
if st.button("Put this layer's choice into the plan", help="the Plan page edits every layer together"):
    entries = dict(state.plan_entries(c))
    entries[path] = state.session_entry(LayerEntry(method_name, rank))
    state.set_plan_entries(entries)
    st.toast(f"{path}: {method_name} rank {rank_text(rank)} is in the plan")

spectra = cached.spectra(c.model, c.arch, c.data, path, method_name)
if spectra:
    st.plotly_chart(plots.spectrum(spectra, values), width="stretch")
else:
    st.info(f"{method_name} has no singular values to show (its factors are fitted per rank); the error curve below still applies.")
curve = cached.error_curve(c.model, c.arch, c.data, c.samples, path, method_name)
error = cached.layer_error(c.model, c.arch, c.data, c.samples, path, method_name, rank)
st.plotly_chart(plots.error_curve(curve, dense.params, (rank_text(rank), new.params, error)), width="stretch")

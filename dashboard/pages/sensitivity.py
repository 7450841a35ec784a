"""Sensitivity page: every chosen layer at a range of ranks, one layer changed at a time (``core.sweep``).

A heat-map of how much the task's headline metric falls, curves per layer and the table as CSV. Sweeps go
through the on-disk sweep cache: a grid swept before is read back at once, a larger one computes only the rows
it lacks.
"""
import streamlit as st

from core.decompose import get_method
from core.errors import RankscopeError
from core.sweep import DENSE
from dashboard import cached, panels, plots, state

c = state.choice()
st.title("Sensitivity")
try:
    model, cfg = cached.model_and_cfg(*c.key)
    table = cached.compressible(*c.key)
    scored_on = panels.evaluation_note(c)
except RankscopeError as err:
    st.error(str(err))
    st.stop()
st.caption(f"{cfg.name} · each point is the model with only that layer rebuilt, scored on {scored_on} · data-free "
           "methods only")

grid = state.grid(c)  # widgets store their value before the page runs; another model's layers are dropped
methods = [m for m in dict.fromkeys(m for ms in table["methods"] for m in ms) if not get_method(m).needs_calibration]
left, middle, right = st.columns([2, 1, 1])
left.multiselect("Layers", list(table["name"]), placeholder="every compressible layer", **state.keep("sweep_layers"))
middle.multiselect("Methods", methods, placeholder="each layer's default", **state.keep("sweep_methods"),
                   help="each method is swept on the layers it applies to")
right.slider("Ranks per layer", 2, 20, **state.keep("sweep_points"), help="spread from rank 1 to full rank")

job = st.session_state.pop("job", None)
if job:
    st.warning(f"{job} was cancelled; the rows it finished are kept in the sweep cache.")
try:
    swept = cached.swept(c, grid)
except RankscopeError as err:
    st.error(str(err))
    st.stop()
b1, b2 = st.columns(2)
run = b1.button("Run sweep", type="primary", disabled=swept is not None, icon=":material/play_arrow:",
                help="rows already in the sweep cache are read, not recomputed")
b2.button("Cancel", help="stops a running sweep (any other click does too)")
if run:
    st.session_state["job"] = "The sweep"
    bar = st.progress(0.0, text="Sweeping…")
    try:
        cached.run_sweep(c, grid, progress=lambda done, total: bar.progress(done / total, text=f"row {done} of {total}"))
    except RankscopeError as err:
        st.session_state.pop("job")
        st.error(str(err))
        st.stop()
    st.session_state.pop("job")
    st.rerun()
if swept is None:
    st.info("Not swept yet on this grid and evaluation subset: click **Run sweep**.")
    st.stop()

points = int((swept["method"] != DENSE).sum())
st.caption(f"{points} points, read from the sweep cache in `{st.session_state['sweep_folder']}`")
st.plotly_chart(plots.sensitivity_heatmap(swept), width="stretch", key="sensitivity_heatmap")
left, right = st.columns(2)
y = left.radio("Curves of", plots.CURVE_Y, format_func=lambda y: plots.curve_title(swept, y), horizontal=True,
               **state.keep("sweep_curve_y", "score"))
x = right.radio("against", list(plots.CURVE_X), format_func={"fraction": "rank fraction", "flops_kept": "FLOPs kept"}.get,
                horizontal=True, **state.keep("sweep_curve_x", "fraction"))
st.plotly_chart(plots.sensitivity_curves(swept, y, x), width="stretch", key="sensitivity_curves")

stem = cfg.name.replace(":", "-").replace("/", "-")
st.download_button("Sweep table (CSV)", swept.to_csv(index=False), file_name=f"{stem}-sweep.csv", mime="text/csv",
                   icon=":material/download:", on_click="ignore")
with st.expander("Sweep table"):
    st.dataframe(swept, hide_index=True, width="stretch")

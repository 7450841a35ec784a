"""Sensitivity page: every chosen layer at a range of ranks, one layer changed at a time (``core.sweep``).

A heat-map of how much the task's headline metric falls, curves per layer and the table as CSV. The table is
scored one of three ways: **exact** (every point evaluated), **proxy** (every point predicted from one pass,
``core.sweep.proxies``, with its agreement against whatever exact points the cache holds) or **hybrid** (the proxy
everywhere, the exact sweep on the points a plan at a chosen FLOPs budget turns on, ``core.sweep.hybrid``).
Everything goes through the on-disk sweep cache: a grid swept before is read back at once, a larger one computes
only the rows it lacks, and the hybrid's exact rows are the exact sweep's. The exact points run in this process or
on Ray (a local instance, or a running cluster), the progress bar moving as each layer's rows arrive.
"""
import streamlit as st

from core.decompose import get_method
from core.errors import RankscopeError
from core.sweep import DENSE, PROXIES, agreement
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

MODES = {"exact": "Exact: every point evaluated", "proxy": "Proxy: every point predicted from one pass",
         "hybrid": "Hybrid: proxy, then exact where a plan's decision lies"}
left, middle, right = st.columns([2, 1, 1])
mode = left.radio("Scored by", list(MODES), format_func=MODES.get, **state.keep("sweep_mode", "exact"))
proxy = middle.selectbox("Proxy", PROXIES, disabled=mode == "exact", **state.keep("sweep_proxy", "fisher"),
                         help="whitened: calibration output error; taylor, fisher: predicted loss change (need labels); "
                              "energy: weight energy dropped")
flops = right.slider("Hybrid's FLOPs budget (%)", 10, 95, step=5, disabled=mode != "hybrid",
                     **state.keep("sweep_hybrid_flops", 50), help="the plan whose decisions the exact points settle")

left, right = st.columns([2, 2])
where = left.radio("Exact points run on", list(cached.RUN_ON), format_func=cached.RUN_ON.get, horizontal=True,
                   disabled=mode == "proxy", **state.keep("sweep_on", "local"),
                   help="Ray (pip install 'rankscope[ray]'): each layer's points are a task, the rows arrive as the "
                        "tasks finish; a local instance takes some 20 s to start")
address = right.text_input("Ray cluster address", disabled=where != "cluster", placeholder="auto or HOST:PORT",
                           **state.keep("sweep_address", "auto"), help="auto: the cluster this machine joined with ray start")


def _bar(what: str):
    bar = st.progress(0.0, text=f"{what}…")
    return lambda done, total: bar.progress(done / total, text=f"{what}: {done} of {total}")


job = st.session_state.pop("job", None)
if job:
    st.warning(f"{job} was cancelled; the rows it finished are kept in the sweep cache.")
results = st.session_state.setdefault("sweep_results", {})  # (model, grid, mode, proxy, flops) -> table
result_key = (c.key, c.samples, c.data, grid, mode, proxy if mode != "exact" else "", flops if mode == "hybrid" else 0)
try:
    swept = cached.swept(c, grid) if mode == "exact" else results.get(result_key)
except RankscopeError as err:
    st.error(str(err))
    st.stop()
b1, b2 = st.columns(2)
run = b1.button(f"Run {mode} sweep", type="primary", disabled=swept is not None, icon=":material/play_arrow:",
                help="rows already in the sweep cache are read, not recomputed")
b2.button("Cancel", help="stops a running sweep (any other click does too)")
if run:
    st.session_state["job"] = f"The {mode} sweep"
    on = "" if where == "local" or mode == "proxy" else " on Ray"
    try:
        executor = cached.executor(where if mode != "proxy" else "local", address)
        if mode == "exact":
            cached.run_sweep(c, grid, progress=_bar(f"Sweeping{on}, rows arrived"), on=executor)
        elif mode == "proxy":
            results[result_key] = cached.run_proxy(c, grid, proxy, progress=_bar(f"Scoring by {proxy}, layer"))
        else:
            results[result_key] = cached.run_hybrid(c, grid, proxy, flops / 100, progress=_bar(f"Exact points{on}, rows arrived"),
                                                    on=executor)
    except RankscopeError as err:
        st.session_state.pop("job")
        st.error(str(err))
        st.stop()
    st.session_state.pop("job")
    st.rerun()
if swept is None:
    st.info(f"Not swept yet this way on this grid and evaluation subset: click **Run {mode} sweep**.")
    st.stop()

points = int((swept["method"] != DENSE).sum())
if mode == "exact":
    st.caption(f"{points} points, read from the sweep cache in `{st.session_state['sweep_folder']}`")
elif mode == "hybrid":
    st.caption(f"{swept.attrs['exact_points']} of the grid's {swept.attrs['grid_points']} points scored exactly, chosen by "
               f"the {swept.attrs['proxy']} proxy for a plan at {flops} % of the FLOPs ({swept.attrs['rounds']} window "
               "growths); the other cells are not scored")
else:
    st.caption(f"{points} points predicted by the {proxy} proxy: the heat-map's values are its scores in the metric's "
               "place, so only their order means anything")
    exact = cached.exact_rows(c, swept)
    shared = int((exact["method"] != DENSE).sum())
    if shared >= 2:
        found = agreement(swept, exact)
        st.metric("Agreement with the exact sweep", f"Kendall τ {found.kendall_tau:.3f} · Spearman ρ {found.spearman_rho:.3f}",
                  help=f"pooled over the {found.points} points whose exact rows the sweep cache holds")
    else:
        st.info("No exact points of this grid are in the sweep cache yet: run the exact or hybrid sweep to measure "
                "the proxy's agreement.")
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

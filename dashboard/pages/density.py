"""Sampling density page: every channel group's density (one slider for all, one per group) with its capacity estimate,
the group's channel spectrum, the narrowed model's parameters, FLOPs, latency, memory and scores, resampling against
each pruning score at the same densities, and the densities exported into the plan."""
import pandas as pd
import streamlit as st

from core.errors import RankscopeError
from core.plan import LayerEntry, Plan
from core.prune import SCORES, needs_gradients
from dashboard import cached, panels, plots, state

METHODS = ["resample", *(f"prune: {s}" for s in SCORES)]
c = state.choice()
st.title("Sampling density")
try:
    model, cfg = cached.model_and_cfg(*c.key)
    energy = st.sidebar.slider("Capacity estimate keeps this share of spectral energy", 0.80, 0.99, step=0.01,
                               **state.keep("sd_energy", 0.95))
    groups = cached.capacities(*c.key, energy)
    labelled = cached.calibration_labelled(c.model, c.arch, c.data)
    scored_on = panels.evaluation_note(c)
except RankscopeError as err:
    st.error(str(err))
    st.stop()
if groups.empty:
    st.warning(f"{cfg.name} has no channel group that can be narrowed.")
    st.stop()
st.caption(f"{cfg.name}: {len(groups)} channel groups · a density is the fraction of a group's channels kept · capacity "
           f"estimate = twice the frequencies holding {energy:.0%} of the energy of the group's smoothly ordered weights, "
           f"over its channels (Nyquist) · scored on {scored_on}")


def _density_key(group: str) -> str:
    return f"sd_density_{group}"


def _all() -> None:
    for group in groups["group"]:
        st.session_state[_density_key(group)] = st.session_state["sd_all"]


def _to_capacity() -> None:
    for group, value in zip(groups["group"], groups["recommended_density"]):
        st.session_state[_density_key(group)] = round(float(value), 2)


methods = [m for m in METHODS if m == "resample" or labelled or not needs_gradients(m.split(": ")[1])]
left, mid, right = st.columns([1, 2, 1])
how = left.selectbox("Narrow by", methods, help="resample: interpolate the smoothly ordered channels (Integral Neural "
                     "Networks); prune: keep the channels an importance score ranks highest (Torch-Pruning)",
                     **state.keep("sd_method", "resample"))
mid.slider("Density of every group", 0.05, 1.0, step=0.05, **state.keep("sd_all", 1.0, then=_all))
right.button("Every group at its capacity estimate", on_click=_to_capacity)
pruning = how != "resample"
usable = groups[groups["prunable"]] if pruning else groups
if pruning and len(usable) < len(groups):
    st.caption(f"Pruning cannot take {len(groups) - len(usable)} group(s) (capsule types): they stay whole.")
with st.expander("One slider per group (the capacity estimate is marked on each)"):
    for row in usable.itertuples():
        st.slider(f"{row.group} · {row.kind}, {row.channels} channels · capacity estimate {row.recommended_density:.2f}",
                  0.05, 1.0, step=0.05, **state.keep(_density_key(row.group), 1.0))
densities = {g: float(st.session_state.get(_density_key(g), 1.0)) for g in usable["group"]}


def _plan(method: str) -> Plan:
    """A plan narrowing every group below density 1 by ``method`` ("resample" or "prune: <score>")."""
    kind, _, score = method.partition(": ")
    options = {"score": score} if score else {}
    keep = usable if kind == "resample" else groups[groups["prunable"]]
    return Plan(c.model, groups={g: LayerEntry(kind, density=d, options=options)
                                 for g, d in densities.items() if d < 1 and g in set(keep["group"])})


plan = _plan(how)
st.subheader(f"{len(plan.groups)} group(s) narrowed by {how}")
narrowed = panels.planned_against_baseline(c, plan, "baseline")
if st.button("Put these densities into the plan", help="the plan's groups: section; the Plan and Export pages show it"):
    state.set_plan_groups({g: state.session_entry(e) for g, e in plan.groups.items()})
    st.toast(f"{len(plan.groups)} group(s) at their densities are in the plan")

left, right = st.columns(2)
left.plotly_chart(plots.group_densities(usable.assign(density=[densities[g] for g in usable["group"]])), width="stretch")
group = right.selectbox("Channel spectrum of", list(groups["group"]), **state.keep("sd_group", groups["group"].iloc[0]))
row = groups.set_index("group").loc[group]
kept = max(1, round(densities.get(group, 1.0) * row["channels"]))
right.plotly_chart(plots.channel_spectrum(cached.group_spectrum(*c.key, group), int(row["cutoff"]), kept), width="stretch")

st.subheader("Resampling against pruning at these densities")
if not labelled:
    st.caption("Pruning by gradients (taylor, hessian) needs labelled calibration images: these have none.")
if st.button("Compare every way", disabled=len(methods) < 2 or not plan.groups,
             help="scores each method's model on the evaluation images (no fine-tune)"):
    rows = []
    with st.spinner("Building and scoring each narrowed model…"):
        for method in methods:
            narrowed_by = _plan(method)
            scored = cached.scores(*c.evaluation, c.threads, narrowed_by)
            rows.append({"how": method, **{s.headline: s.score for s in scored},
                         "params": cached.planned_counts(*c.evaluation, narrowed_by)["params"]})
    st.session_state["sd_comparison"] = (plan, c.evaluation, pd.DataFrame(rows))
compared = st.session_state.get("sd_comparison")
if compared is not None and compared[:2] == (plan, c.evaluation):
    shown = [panels.metric_of(s) for s in narrowed]
    st.plotly_chart(plots.method_comparison(compared[2], shown[0]), width="stretch")
    st.dataframe(compared[2], hide_index=True, width="stretch",
                 column_config={m.name: panels.score_column(m.title, m) for m in shown})

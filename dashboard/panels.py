"""Pieces more than one page draws."""
from __future__ import annotations

import streamlit as st

from core.errors import RankscopeError
from core.plan import Plan
from dashboard import state
from dashboard.format import human, percent, points, share


def planned_against_baseline(c: state.Choice, plan_text: str, baseline_name: str, accuracy_note: str = "") -> dict | None:
    """Five metrics of the model ``plan_text`` builds against the model as it is (the Attention and Sampling density
    pages): accuracy without fine-tune, parameters and FLOPs counted on the built model, latency measured at once,
    peak memory on request. A bad plan is a message on the page, which then stops.

    Returns the planned model's accuracy (``state.accuracy``; ``None`` without evaluation data).
    """
    dense = Plan(c.model).dumps()
    try:
        base = state.baseline_counts(*c.key)
        counted = state.planned_counts(c.model, c.arch, c.data, plan_text)
        baseline = state.accuracy(c.model, c.arch, c.data, c.samples, c.device, c.threads, dense)
        planned = state.accuracy(c.model, c.arch, c.data, c.samples, c.device, c.threads, plan_text)
        dense_ms = state.planned_latency(c.model, c.arch, c.data, dense, c.batch, c.threads, c.device)
        latency_ms = state.planned_latency(c.model, c.arch, c.data, plan_text, c.batch, c.threads, c.device)
    except RankscopeError as err:
        st.error(str(err))
        st.stop()
    cols = st.columns(5)
    if planned is not None:
        cols[0].metric("Accuracy (no fine-tune)", percent(planned["accuracy"]), points(planned["accuracy"] - baseline["accuracy"]),
                       help=f"top-1 on {planned['samples']} images; {baseline_name} {percent(baseline['accuracy'])}{accuracy_note}")
    else:
        cols[0].metric("Accuracy", "—", help="no evaluation data for this model")
    cols[1].metric("Parameters", human(counted["params"]), share(counted["params"], base["params"]), delta_color="off",
                   delta_arrow="off", help="counted on the built model")
    cols[2].metric("FLOPs / image", human(counted["flops"]), share(counted["flops"], base["flops"]), delta_color="off",
                   delta_arrow="off", help="counted on the built model; 1 MAC = 2 FLOPs")
    cols[3].metric("Latency (median)", f"{latency_ms:.2f} ms", share(latency_ms, dense_ms), delta_color="off", delta_arrow="off",
                   help=f"whole model at batch {c.batch}, measured; {baseline_name} {dense_ms:.2f} ms")
    with cols[4]:
        memory = state.memory_on_request(c, [dense, plan_text])
        st.metric("Peak memory", f"{memory[1]:.1f} MB" if memory else "—", share(memory[1], memory[0]) if memory else None,
                  delta_color="off", delta_arrow="off", help="model + input + one forward pass, measured in a fresh process"
                  + (f"; {baseline_name} {memory[0]:.1f} MB" if memory else ""))
    return planned

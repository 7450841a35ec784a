"""Model page: choose a model and evaluation size, see its measured profile and per-layer costs."""
import os

import streamlit as st

from core.errors import RankscopeError
from core.models import list_models
from dashboard import plots, state
from dashboard.format import human

state.init_state()
st.title("Model")
left, right = st.columns([2, 1])
choice = left.selectbox("Shipped model", list_models(), index=list_models().index(state.DEFAULTS["model"]))
custom = left.text_input("…or any timm:/torchvision: name", placeholder="timm:mobilenetv3_small_100")
name = custom.strip() or choice
samples = right.number_input("Evaluation images", min_value=100, max_value=10000, step=100, key="samples")
threads = right.slider("CPU threads", 1, os.cpu_count() or 1, key="threads")
batch = right.select_slider("Batch size (latency, memory)", options=[1, 8, 32, 128], key="batch")

try:
    result = state.profile(name, int(samples), int(batch), int(threads))
    table = state.layers(name)
except RankscopeError as err:
    st.error(str(err))
    st.stop()
st.session_state["model"] = name

cols = st.columns(6)
cols[0].metric("Parameters", human(result["params"]), help=f"{result['model_size_mb']:.2f} MB of weights and buffers")
cols[1].metric("FLOPs / image", human(result["flops"]), help=result["flop_convention"])
cols[2].metric("Latency (median)", f"{result['latency_ms']:.2f} ms", help=f"p90 {result['latency_p90_ms']:.2f} ms, batch {batch}, {threads} thread(s)")
cols[3].metric("Peak memory", f"{result['peak_memory_mb']:.1f} MB", help=f"measured by {result['memory_method']}")
if result["accuracy"] is not None:
    cols[4].metric("Top-1 accuracy", f"{100 * result['accuracy']:.2f} %", help=f"on {result['samples']} test images")
    cols[5].metric("Mean loss", f"{result['loss']:.4f}")
else:
    cols[4].metric("Top-1 accuracy", "—", help="no evaluation data for this model; the shipped models bring theirs")

st.plotly_chart(plots.layer_bars(table), use_container_width=True)
with st.expander("All layers"):
    st.dataframe(table, hide_index=True, use_container_width=True)

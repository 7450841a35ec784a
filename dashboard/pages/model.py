"""Model page: choose a model (shipped, timm/torchvision name, or an uploaded checkpoint), the evaluation data
and size, device and threads; see the baseline's measured profile, its scores and per-layer costs."""
import os
from pathlib import Path

import streamlit as st
import torch

from core.errors import RankscopeError
from core.models import list_models
from core.plan import Plan
from core.task import get_task
from core.uploads import MAX_UPLOAD_MB, WEIGHT_SUFFIXES, store_upload
from dashboard import cached, panels, plots, state
from dashboard.format import capital, human, percent

state.init_state()
st.title("Model")


def _uploaded() -> None:
    """Store a new upload (size and type checked in ``core.uploads``) and make it the model."""
    file = st.session_state["_upload"]
    st.session_state["upload_error"] = ""
    if file is None:
        st.session_state["source"] = "shipped"
        return
    try:
        path = store_upload(file.getvalue(), file.name)
    except RankscopeError as err:
        st.session_state["upload_error"] = str(err)
        return
    st.session_state["upload_path"], st.session_state["source"] = str(path), "upload"


def _picked_shipped() -> None:
    st.session_state["source"] = "shipped"


def _typed_name() -> None:
    st.session_state["source"] = "custom" if st.session_state["custom"].strip() else "shipped"


left, right = st.columns([2, 1])
left.selectbox("Shipped model", list_models(), **state.keep("shipped", then=_picked_shipped))
left.text_input("…or any timm:/torchvision: name", placeholder="timm:mobilenetv3_small_100", **state.keep("custom", then=_typed_name))
with left.expander("…or upload a checkpoint", expanded=st.session_state.get("source") == "upload"):
    st.file_uploader(
        f"Weights ({', '.join(WEIGHT_SUFFIXES)}) or a .zip of a model saved by Export / `rankscope apply`; "
        f"at most {MAX_UPLOAD_MB} MB", type=[s.lstrip(".") for s in WEIGHT_SUFFIXES] + ["zip"], key="_upload",
        on_change=_uploaded, max_upload_size=MAX_UPLOAD_MB)
    arch = st.text_input("Architecture of the weights (not needed for a .zip)", placeholder="fmnist-resnet or timm:resnet18",
                         **state.keep("upload_arch"))
if st.session_state.get("upload_error"):
    left.error(st.session_state["upload_error"])

right.text_input(f"Evaluation data (empty: the model's own, else {cached.FALLBACK_DATA})", **state.keep("data"),
                 placeholder="fashion-mnist, cifar10:ROOT, imagefolder:PATH, imagenet-samples, photos:N")
right.number_input("Evaluation images", min_value=1, max_value=10000, step=100, **state.keep("samples"),
                   help="the subset behind every live score; full-set runs are on the Plan page")
devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
right.selectbox("Device", devices, **state.keep("device"))
right.slider("CPU threads", 1, os.cpu_count() or 1, **state.keep("threads"))
right.select_slider("Batch size (latency, memory)", options=[1, 8, 32, 128], **state.keep("batch"))

source = st.session_state["source"]
if source == "upload" and st.session_state.get("upload_path"):
    path = st.session_state["upload_path"]
    folder = Path(path).is_dir()  # an unpacked .zip of a saved model: its architecture is inside
    name, model_arch = f"file:{path}", "" if folder else st.session_state["upload_arch"].strip()
    if not folder and not model_arch:
        st.info("Give the architecture these weights belong to (e.g. fmnist-resnet) to load them.")
        st.stop()
elif source == "custom":
    name, model_arch = st.session_state["custom"].strip(), ""
else:
    name, model_arch = st.session_state["shipped"], ""
c = state.choice()
try:
    result = cached.profile(name, c.batch, c.threads, model_arch, c.device)
    table = cached.layers(name, model_arch)
    _, cfg = cached.model_and_cfg(name, model_arch)
    data, scored = cached.data_name(name, model_arch, c.data), cached.scores(name, model_arch, c.data, c.samples, c.device,
                                                                             c.threads, Plan(name))[0]
except RankscopeError as err:
    st.error(str(err))
    st.stop()
st.session_state["model"], st.session_state["arch"] = name, model_arch

st.subheader(f"Baseline: {cfg.name}")
card = cfg.card
st.caption(
    f"input {'×'.join(map(str, cfg.input_size))}, {cfg.num_classes} classes · weights: {cfg.weights or 'random init (seeded)'}"
    + (f" · trained test accuracy {percent(card['test_accuracy'])} on {card.get('test_samples', '?')} images" if "test_accuracy" in card else "")
)
cols = st.columns(4)
cols[0].metric("Parameters", human(result["params"]), help=f"{result['model_size_mb']:.2f} MB of weights and buffers")
cols[1].metric("FLOPs / sample", human(result["flops"]), help=result["flop_convention"])
cols[2].metric("Latency (median)", f"{result['latency_ms']:.2f} ms", help=f"p90 {result['latency_p90_ms']:.2f} ms, batch {c.batch}, {c.threads} thread(s), {c.device}")
cols[3].metric("Peak memory", f"{result['peak_memory_mb']:.1f} MB", help=f"measured by {result['memory_method']}")
fidelity_task = get_task(get_task(scored.task).fidelity)
fidelity = ", ".join(m.title for m in fidelity_task.metrics)
if scored.task != fidelity_task.name:
    metrics = [m for m in get_task(scored.task).metrics if m.name in scored.values]
    for col, metric in zip(st.columns(max(4, len(metrics))), metrics):
        panels.score_metric(col, capital(metric.title), scored, name=metric.name)
    st.caption(f"{scored.task} on {scored.samples} images of {data} (seeded subset); the other pages also show each "
               f"compressed model's fidelity to this one ({fidelity}).")
else:
    why = f" (no data set rankscope has fits {cfg.name})" if cached.is_fallback(name, model_arch, c.data) else ""
    st.info(f"{data} has no labels{why}: there is nothing to score this model against but itself, and every page "
            f"scores a compressed model by its fidelity to this one ({fidelity}) on {scored.samples} images. For "
            "accuracy, give labelled data above (imagefolder:PATH with one folder per class).")

st.plotly_chart(plots.layer_bars(table), width="stretch")
with st.expander("All layers"):
    st.dataframe(table, hide_index=True, width="stretch")

"""Attention page: a variant (NMF, projective NMF, NTF, Linformer, Nyström, Performer, low-rank QKV) in place of softmax
attention in every block or in chosen ones; its scores, parameters, FLOPs, latency and memory against the softmax
model; latency and memory against sequence length; the choice exported into the plan."""
import streamlit as st

from core.attention import attention_paths, model_variants, variant_options, vit_seq_len
from core.bench.attention import length_sweep
from core.errors import RankscopeError
from core.plan import LayerEntry, Plan
from dashboard import cached, panels, plots, state

SIZES = {"rank", "k", "landmarks", "features"}  # options that set a variant's size: slid up to the token count or width
c = state.choice()
st.title("Attention")
try:
    model, cfg = cached.model_and_cfg(*c.key)
except RankscopeError as err:
    st.error(str(err))
    st.stop()
paths = attention_paths(model)
if not paths:
    st.info(f"{cfg.name} has no attention modules. Choose fmnist-vit or a timm ViT (e.g. timm:vit_tiny_patch16_224) "
            "on the Model page.")
    st.stop()
tokens = vit_seq_len(model) or 0
first = model.get_submodule(paths[0])
language = hasattr(model, "causal_lm")  # a causal LM: only the variants that can be causal are offered
width = model.config.hidden_size if language else first.qkv.in_features if hasattr(first, "qkv") else 0
offered = model_variants(model)
try:
    scored_on = panels.evaluation_note(c)
except RankscopeError as err:
    st.error(str(err))
    st.stop()
st.caption(f"{cfg.name}: {len(paths)} attention module(s), {tokens} tokens of width {width} · scored on {scored_on} · "
           f"latency and memory at batch {c.batch}, {c.threads} thread(s)")

left, right = st.columns([1, 2])
if language:
    st.caption(f"A causal language model: {', '.join(offered)} only. Linformer, Nyström and the factorizations mix every "
               "token of the sequence, later ones included, so they cannot be causal.")
if st.session_state.get("att_variant") not in offered:
    st.session_state["att_variant"] = "nmf" if "nmf" in offered else "performer"
variant = left.selectbox("Variant", offered, **state.keep("att_variant"))
every = left.radio("Replace attention in", ["every block", "chosen blocks"], horizontal=True, **state.keep("att_scope", "every block"))
chosen = paths
if every == "chosen blocks":
    chosen = right.multiselect("Blocks", paths, **state.keep("att_blocks", paths[:1]))
hyper = {}
for name, default in variant_options(variant).items():
    key = f"att_{variant}_{name}"
    if isinstance(default, bool):
        hyper[name] = right.checkbox(name, **state.keep(key, default))
    elif isinstance(default, int):
        top = max(tokens, width, 2 * default) if name in SIZES else max(20, 2 * default)
        hyper[name] = right.slider(name, 0 if default == 0 else 1, top, **state.keep(key, default))
    else:
        hyper[name] = right.selectbox(name, ["svd", "aa_svd"] if name == "method" else [default], **state.keep(key, default))
if not chosen:
    st.warning("Choose at least one block.")
    st.stop()

rank = hyper.pop("rank", None)
entries = {p: LayerEntry("attention", rank, options=dict(hyper), variant=variant) for p in chosen}
plan = Plan(c.model, entries)
st.subheader(f"{variant} in {len(chosen)} of {len(paths)} block(s), against the softmax model")
panels.planned_against_baseline(c, plan, "softmax model", ". `rankscope bench attention` fine-tunes every variant "
                                "the same way and reports the gap after it.")
if st.button("Put this choice into the plan", help="the Plan and Export pages show and export it"):
    current = dict(state.plan_entries(c))
    for path, entry in entries.items():
        current = {p: e for p, e in current.items() if not p.startswith(path + ".")}  # the projections go with the module
        current[path] = state.session_entry(entry)
    state.set_plan_entries(current)
    st.toast(f"{variant} is in the plan for {len(entries)} block(s)")

if language:
    st.stop()  # the length sweep below times a timm layer: it says nothing about a causal LM's attention
st.subheader("Against sequence length")
st.caption(f"One attention layer of this model's width ({width}) with its heads, seeded weights, batch 1, {c.threads} "
           "thread(s); every variant is measured in this process with the hyperparameters above where they apply.")
a, b = st.columns([2, 1])
shown = a.multiselect("Variants", offered, **state.keep("att_curve_variants", ["softmax", variant]))
longest = b.select_slider("Longest sequence", [256, 512, 1024, 2048, 4096, 8192, 16384], **state.keep("att_longest", 2048))
if st.button("Measure against sequence length", disabled=not shown):
    lengths = [n for n in (256, 512, 1024, 2048, 4096, 8192, 16384) if n <= longest]
    heads = getattr(model.get_submodule(paths[0]), "num_heads", 4)
    with st.spinner(f"Timing {len(shown)} variant(s) at {len(lengths)} lengths…"):
        size = {k: v for k, v in {**hyper, "rank": rank}.items() if v is not None}
        st.session_state["att_curves"] = length_sweep(shown, lengths, dim=width, heads=heads, threads=c.threads,
                                                      hyper={variant: size})
curves = st.session_state.get("att_curves")
if curves is not None:
    st.plotly_chart(plots.length_curves(curves), width="stretch")
    st.dataframe(curves[["variant", "seq_len", "latency_ms", "memory_mb", "gflops", "latency_ratio", "memory_ratio", "backend"]],
                 hide_index=True, width="stretch")

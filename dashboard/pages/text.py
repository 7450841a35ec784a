"""Text page: what a language model writes before and after compression. One prompt, a number of new tokens and a plan
(the one under edit, or one method on every layer); then the dense and the compressed model's greedy continuations side
by side, each token shaded by how much more or less likely the compressed model finds it than the dense model
(``core.evaluate.continuations``)."""
import html
import math

import pandas as pd
import streamlit as st

from core.errors import RankscopeError
from core.evaluate.continuations import DEFAULT_NEW_TOKENS
from core.models import list_models
from core.models.language import check_prompt_length
from dashboard import cached, panels, state

LM_MODELS = ("smollm2-135m",)  # shipped language models, named when another model is chosen
DEFAULT_PROMPT = "Now is the winter of our discontent\nMade glorious summer by this sun of York;"
MAX_NEW_TOKENS = 256
SCALE_NATS = 2.0  # |Δ log p| at which a token's shade is full
PROMPT_SHOWN = 240  # characters of the prompt shown before each continuation (its end)
NEGATIVE, POSITIVE = (214, 39, 40), (31, 119, 180)  # red: less likely under the compressed model; blue: more likely


def _use(name: str) -> None:
    """Make the shipped model ``name`` the one every page works on, as the Model page's shipped-model box does."""
    st.session_state.update(model=name, arch="", shipped=name, source="shipped")


def _shade(diff: float) -> str:
    """The background of a token whose log-probability changed by ``diff`` nats (compressed − dense)."""
    r, g, b = NEGATIVE if diff < 0 else POSITIVE
    return f"rgba({r}, {g}, {b}, {min(abs(diff) / SCALE_NATS, 1.0):.3f})"


def _shaded(prompt: str, table: pd.DataFrame) -> str:
    """The end of ``prompt`` in grey, then each token of ``table`` (a continuation) on its shade, escaped, with its
    log-probabilities in its tooltip."""
    shown = prompt if len(prompt) <= PROMPT_SHOWN else "…" + prompt[-PROMPT_SHOWN:]
    spans = [f'<span style="color: #888">{html.escape(shown)}</span>']
    for row in table.itertuples(index=False):
        tip = (f"id {row.id}: log p dense {row.logprob_dense:.2f}, compressed {row.logprob_compressed:.2f}, "
               f"Δ {row.diff:+.2f} nats")
        spans.append(f'<span title="{html.escape(tip)}" style="background: {_shade(row.diff)}; '
                     f'border-radius: 2px">{html.escape(row.token)}</span>')
    return ('<div style="white-space: pre-wrap; font-family: monospace; line-height: 1.7; padding: 0.5em; '
            'border: 1px solid rgba(128, 128, 128, 0.4); border-radius: 4px">' + "".join(spans) + "</div>")


def _legend() -> str:
    """What the shades mean: a red-white-blue bar from −:data:`SCALE_NATS` to +:data:`SCALE_NATS` nats."""
    red, blue = _shade(-SCALE_NATS), _shade(SCALE_NATS)
    return ('<div style="font-size: 0.85em">'
            f'<span style="display: inline-block; width: 14em; height: 0.9em; vertical-align: middle; '
            f'background: linear-gradient(to right, {red}, rgba(255, 255, 255, 0), {blue})"></span> '
            f"Δ = log p<sub>compressed</sub> − log p<sub>dense</sub> of each token given the text before it "
            f"(nats): red, the compressed model finds the token less likely than the dense model; blue, more likely; "
            f"full colour at ±{SCALE_NATS:g} nats (a factor e<sup>{SCALE_NATS:g}</sup> ≈ {math.exp(SCALE_NATS):.1f} "
            "in probability) and beyond. Hover a token for its numbers.</div>")


c = state.choice()
st.title("Text")
try:
    model, cfg = cached.model_and_cfg(*c.key)
except RankscopeError as err:
    st.error(str(err))
    st.stop()
if not cfg.vocab_size:
    shipped = [m for m in LM_MODELS if m in list_models()]
    st.info(f"The Text page needs a language model: {cfg.name} does not take text. Choose one on the Model page "
            f"({', '.join(shipped)} or hf:DIR), or here:", icon=":material/notes:")
    for col, lm in zip(st.columns(4), shipped):
        col.button(f"Use {lm}", on_click=_use, args=(lm,))
    st.stop()

# --- what to compare: a prompt, a length, a plan ---------------------------------------------
left, right = st.columns([2, 1])
prompt = left.text_area("Prompt", height=110, **state.keep("text_prompt", DEFAULT_PROMPT))
new_tokens = int(right.number_input("New tokens", 1, MAX_NEW_TOKENS, step=8,
                                    **state.keep("text_new_tokens", DEFAULT_NEW_TOKENS)))
plan = panels.plan_choice(c, right, "text", "svd")

# --- the continuations: the prompt checked first (no model runs for a prompt that cannot fit) ---
try:
    check_prompt_length(model, cached.prompt_length(*c.key, prompt), new_tokens)
    shown = cached.continuations(*c.evaluation, c.threads, plan, prompt, new_tokens)
except RankscopeError as err:
    st.error(str(err))
    st.stop()
layers = len(plan.layers) + len(plan.groups)
st.caption(f"{cfg.name}: a prompt of {shown.prompt_tokens} tokens, up to {new_tokens} new tokens each, greedy; the "
           f"plan has {layers} entries"
           + (f" ({', '.join(sorted({e.method for e in plan.layers.values()}))})" if plan.layers else "") + ".")
if not layers:
    st.info("The plan is empty: the compressed model is the dense model.")

cols = st.columns(4)
cols[0].metric("Tokens in common", f"{shown.agreed} of {len(shown.dense)}",
               help="leading tokens the two continuations share before they first differ")
cols[1].metric("Mean Δ log p, dense text", f"{shown.dense['diff'].mean():+.3f} nats",
               help="mean over the dense continuation's tokens of log p compressed − log p dense: how much less "
                    "(−) the compressed model expects what the dense model writes")
cols[2].metric("Mean Δ log p, compressed text", f"{shown.compressed['diff'].mean():+.3f} nats",
               help="the same over the compressed continuation's tokens")
cols[3].metric("Dense log p of the compressed text", f"{shown.compressed['logprob_dense'].mean():.3f} nats",
               help="mean log-probability the dense model gives the compressed continuation's tokens (its own "
                    f"continuation: {shown.dense['logprob_dense'].mean():.3f})")

st.html(_legend())
dense_col, compressed_col = st.columns(2)
dense_col.subheader("Dense model")
dense_col.html(_shaded(prompt, shown.dense))
compressed_col.subheader("Compressed model")
compressed_col.html(_shaded(prompt, shown.compressed))
with st.expander("Per-token log-probabilities"):
    table_cols = st.columns(2)
    table_cols[0].dataframe(shown.dense, hide_index=True, key="text_dense_table")
    table_cols[1].dataframe(shown.compressed, hide_index=True, key="text_compressed_table")

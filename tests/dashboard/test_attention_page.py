"""The Attention page on fmnist-vit: a variant swapped into every block, numbers counted on the built model, the plan."""
from __future__ import annotations

import pytest

from core.attention import swap_model
from core.models import create_model
from core.profile import count_params

from tests.dashboard.helpers import metrics

pytestmark = pytest.mark.slow  # a Streamlit AppTest page: evaluates a model per run


def test_nmf_in_every_block_is_counted_scored_and_put_into_the_plan(page):
    at = page("pages/attention.py", model="fmnist-vit", shipped="fmnist-vit")
    assert at.selectbox(key="_w_att_variant").value == "nmf"
    shown = metrics(at)
    vit = create_model("fmnist-vit")[0]
    expected = count_params(swap_model(vit, "nmf", rank=8, steps=6, one_step=True))
    assert shown["Parameters"] == f"{expected / 1e3:.2f} k"
    assert shown["Top-1 (no fine-tune)"].endswith(" %") and shown["Latency (median)"].endswith(" ms")
    at.slider(key="_w_att_nmf_rank").set_value(4).run()
    assert not at.exception
    assert shown["Peak memory"] == "—"  # measured in a fresh process only when asked
    next(b for b in at.button if b.label == "Measure peak memory").click().run()
    assert not at.exception and metrics(at)["Peak memory"].endswith(" MB")
    next(b for b in at.button if b.label == "Put this choice into the plan").click().run()
    assert not at.exception
    entries = at.session_state["plan_entries"]
    assert entries["blocks.3.attn"] == {"method": "attention", "rank": 4, "density": None,
                                        "options": {"steps": 6, "one_step": True, "readout": 0}, "variant": "nmf"}
    assert not any(p.startswith("blocks.3.attn.") for p in entries)  # its projections' own entries went with it
    at.switch_page("pages/plan.py").run()
    assert not at.exception
    others = next(d.value for d in at.dataframe if "layer or group" in d.value.columns)
    assert others["method"].tolist() == ["attention nmf"] * 4 and others["rank"].tolist() == ["4"] * 4


def test_a_model_without_attention_says_so(page):
    at = page("pages/attention.py")
    assert "has no attention modules" in at.info[0].value

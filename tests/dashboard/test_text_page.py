"""The Text page: a model that takes no text gets a message; a tiny language model's dense and compressed greedy
continuations are drawn side by side, shaded as core scores them, with a legend; prompts that cannot be continued
(longer than the context, empty) are an error on the page."""
from __future__ import annotations

import html
import re

import pytest

from core.evaluate import greedy_continuations
from core.models import create_model
from core.models.language import load_tokenizer
from core.plan import compress
from core.plan.starting import make_plan
from tests.dashboard.helpers import metrics
from tests.evaluate.test_continuations import CONTEXT, save_tiny_lm

pytestmark = pytest.mark.slow  # a Streamlit AppTest page: loads a language model and generates with it

PROMPT, NEW, KEPT = "To be, or not", 8, 50
TIP = re.compile(r'<span title="id (\d+): ')


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> str:
    """``hf:DIR`` of the tiny llama of tests/evaluate/test_continuations.py and its character-level tokenizer."""
    return f"hf:{save_tiny_lm(tmp_path_factory.mktemp('tiny-lm'))}"


def _session(name: str, **more) -> dict:
    return dict(model=name, source="custom", custom=name, samples=20, text_prompt=PROMPT, text_new_tokens=NEW,
                text_source="uniform", text_method="svd", text_kept=KEPT) | more


def _continuations(at) -> list[str]:
    """The bodies of the two shaded continuations (the ``st.html`` blocks after the legend)."""
    return [block.proto.body for block in at.get("html")][1:]


def test_a_model_that_takes_no_text_gets_a_message_and_a_way_out(page):
    at = page("pages/text.py")  # fmnist-resnet, the default
    assert at.title[0].value == "Text"
    assert at.info[0].value == ("The Text page needs a language model: fmnist-resnet does not take text. Choose one on "
                                "the Model page (smollm2-135m or hf:DIR), or here:")
    assert [b.label for b in at.button] == ["Use smollm2-135m"] and not at.get("html")


def test_both_continuations_shaded_as_core_scores_them(page, tiny_lm):
    at = page("pages/text.py", **_session(tiny_lm))
    assert not at.error
    model, cfg = create_model(tiny_lm)
    plan = make_plan(model, cfg, "svd", ratio=KEPT / 100)
    expected = greedy_continuations(model, compress(model, cfg, plan, force=True)[0], load_tokenizer(cfg.tokenizer),
                                    PROMPT, NEW)
    legend, *shown = [block.proto.body for block in at.get("html")]
    assert "log p<sub>compressed</sub> − log p<sub>dense</sub>" in legend and "±2 nats" in legend
    assert [h.value for h in at.subheader] == ["Dense model", "Compressed model"]
    for body, table in zip(shown, (expected.dense, expected.compressed), strict=True):
        assert body.count(f">{html.escape(PROMPT)}</span>") == 1  # the prompt, then the continuation
        assert [int(i) for i in TIP.findall(body)] == list(table["id"])
        for row in table.itertuples():
            assert f"Δ {row.diff:+.2f} nats" in body
    red = 'style="background: rgba(214, 39, 40, '
    assert red in shown[0] or 'style="background: rgba(31, 119, 180, ' in shown[0]
    assert metrics(at)["Tokens in common"] == f"{expected.agreed} of {NEW}"
    assert metrics(at)["Mean Δ log p, dense text"] == f"{expected.dense['diff'].mean():+.3f} nats"


def test_a_prompt_typed_in_is_continued(page, tiny_lm):
    at = page("pages/text.py", **_session(tiny_lm))
    at.text_area(key="_w_text_prompt").input("Alas, poor").run()
    assert not at.exception and not at.error
    assert all(">Alas, poor</span>" in body for body in _continuations(at))
    assert at.session_state["text_prompt"] == "Alas, poor"


def test_a_prompt_beyond_the_context_is_an_error_on_the_page(page, tiny_lm):
    at = page("pages/text.py", **_session(tiny_lm, text_prompt="x" * (CONTEXT - 4)))
    assert [e.value for e in at.error] == [f"prompt of {CONTEXT - 4} tokens + {NEW} new tokens exceeds the context of "
                                           f"{CONTEXT} tokens: shorten the prompt or ask for fewer new tokens"]
    assert not at.get("html") and not at.metric


def test_an_empty_prompt_is_an_error_on_the_page(page, tiny_lm):
    at = page("pages/text.py", **_session(tiny_lm, text_prompt=""))
    assert [e.value for e in at.error] == ["the prompt is empty: give some text for the model to continue"]
    assert not at.get("html")

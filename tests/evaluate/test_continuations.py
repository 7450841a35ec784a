"""greedy_continuations on a tiny seeded llama with a character-level tokenizer: the continuations' lengths and texts,
diff = compressed - dense log-probability, greedy tokens the dense model's most likely ones, identical models differing
nowhere, and the prompts refused in one line (empty, longer than the context); (slow) smollm2-135m's context."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from core.errors import RankscopeError
from core.evaluate import greedy_continuations
from core.evaluate.continuations import COLUMNS
from core.models.cfg import ModelCfg
from core.models.language import CausalLM, check_prompt_length, context_length, load_tokenizer
from core.plan import apply_plan
from core.plan.starting import make_plan
from tests.helpers import tiny_llama

CHARS, CONTEXT, NEW = 129, 64, 12  # ASCII and [UNK]; the tiny llama's context; tokens generated
PROMPT = "To be, or not"


def save_tiny_lm(folder: Path) -> Path:
    """A seeded 2-layer llama (tied embeddings, no end-of-text token, so it always writes every token asked for) and
    a character-level tokenizer (each ASCII character its code point as id, 128 for any other), saved in ``folder``
    as transformers saves them (``hf:folder`` loads both). Returns ``folder``."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {chr(i): i for i in range(128)} | {"[UNK]": 128}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()  # characters decoded side by side, no spaces between them
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]").save_pretrained(folder)
    tiny_llama(vocab_size=CHARS, intermediate_size=48, max_position_embeddings=CONTEXT, initializer_range=0.2,
               bos_token_id=None, eos_token_id=None).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """``(dense, compressed, tokenizer)``: the tiny llama, it with svd on every linear at 30 % of the parameters."""
    from core.models import create_model

    folder = save_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))
    dense, cfg = create_model(f"hf:{folder}")
    compressed, _ = apply_plan(dense, make_plan(dense, ModelCfg("tiny", (16,), CHARS, vocab_size=CHARS), "svd",
                                                ratio=0.3))
    return dense, compressed, load_tokenizer(cfg.tokenizer)


@pytest.fixture(scope="module")
def result(tiny):
    dense, compressed, tokenizer = tiny
    return greedy_continuations(dense, compressed, tokenizer, PROMPT, NEW)


def test_both_continuations_have_every_token_asked_for(result):
    assert result.prompt == PROMPT and result.prompt_tokens == len(PROMPT)  # one token per character
    for table in (result.dense, result.compressed):
        assert tuple(table.columns) == COLUMNS and len(table) == NEW
        assert "".join(table["token"]) == "".join(chr(i) for i in table["id"])  # each token's own text
        assert (table["logprob_dense"] <= 0).all() and (table["logprob_compressed"] <= 0).all()
    assert list(result.dense["id"]) != list(result.compressed["id"])  # 30 % of the parameters writes otherwise
    assert 0 <= result.agreed < NEW


def test_diff_is_compressed_minus_dense_logprob(result):
    for table in (result.dense, result.compressed):
        assert (table["diff"] == table["logprob_compressed"] - table["logprob_dense"]).all()
        assert table["diff"].abs().max() > 0


def test_greedy_tokens_are_each_models_most_likely_ones(tiny, result):
    dense, compressed, _ = tiny
    for model, table, column in ((dense, result.dense, "logprob_dense"),
                                 (compressed, result.compressed, "logprob_compressed")):
        ids = torch.tensor([[ord(ch) for ch in PROMPT] + list(table["id"])])  # (1, P + N)
        with torch.no_grad():
            logp = torch.log_softmax(model(ids)[0, len(PROMPT) - 1:-1].double(), dim=-1)  # (N, V)
        assert torch.equal(logp.argmax(-1), torch.tensor(list(table["id"])))
        assert torch.allclose(logp.max(-1).values, torch.tensor(table[column].to_numpy()), atol=1e-5)


def test_identical_models_differ_nowhere(tiny):
    dense, _, tokenizer = tiny
    same = greedy_continuations(dense, dense, tokenizer, PROMPT, NEW)
    assert same.agreed == NEW and list(same.dense["id"]) == list(same.compressed["id"])
    assert (same.dense["diff"] == 0).all() and (same.compressed["diff"] == 0).all()


def test_a_prompt_beyond_the_context_is_refused_with_the_lengths(tiny):
    dense, compressed, tokenizer = tiny
    assert context_length(dense) == CONTEXT
    with pytest.raises(RankscopeError, match=r"^prompt of 60 tokens \+ 10 new tokens exceeds the context of 64 tokens"):
        greedy_continuations(dense, compressed, tokenizer, "x" * 60, 10)
    greedy_continuations(dense, compressed, tokenizer, "x" * 54, 10)  # exactly the context: fine


def test_an_empty_prompt_is_refused(tiny):
    dense, compressed, tokenizer = tiny
    with pytest.raises(RankscopeError, match="^the prompt is empty"):
        greedy_continuations(dense, compressed, tokenizer, "", NEW)
    with pytest.raises(RankscopeError, match="^the prompt is empty"):
        check_prompt_length(dense, 0, NEW)


def test_bad_new_tokens_and_models_are_refused(tiny):
    dense, compressed, tokenizer = tiny
    with pytest.raises(RankscopeError, match="^0 new tokens asked for"):
        greedy_continuations(dense, compressed, tokenizer, PROMPT, 0)
    with pytest.raises(RankscopeError, match="^the compressed model is a Linear, not a causal language model"):
        greedy_continuations(dense, nn.Linear(2, 2), tokenizer, PROMPT, NEW)


@pytest.mark.slow
def test_smollm2_context_is_8192_tokens(smollm2):
    model, _ = smollm2
    assert isinstance(model, CausalLM) and context_length(model) == 8192
    check_prompt_length(model, 8192 - 64, 64)
    with pytest.raises(RankscopeError, match=r"^prompt of 8190 tokens \+ 3 new tokens exceeds the context of 8192"):
        check_prompt_length(model, 8190, 3)

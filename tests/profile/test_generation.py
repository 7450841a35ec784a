"""Generation speed of a causal LM (core.profile.generation) on a tiny random llama: greedy decoding with the KV cache
returns exactly the tokens asked for, the same as a hand loop without the cache, and the rates are positive and
finite (no timing is asserted)."""
from __future__ import annotations

import math

import pytest
import torch

from core.errors import RankscopeError
from core.profile.generation import (ab_generation, decode_rate, decode_rate_of, generate_tokens, interleaved,
                                     prefill_latency)
from tests.helpers import tiny_llama

VOCAB = 64


@pytest.fixture(scope="module")
def tiny_lm():
    """A seeded 2-layer llama (grouped-query attention) wrapped in CausalLM, eval mode."""
    from core.models.language import CausalLM

    return CausalLM(tiny_llama(vocab_size=VOCAB, max_position_embeddings=128, tie_word_embeddings=False)).eval()


def prompt(tokens: int) -> torch.Tensor:
    return torch.randint(0, VOCAB, (1, tokens), generator=torch.Generator().manual_seed(tokens))


def test_generates_the_tokens_asked_for_as_a_greedy_loop_does(tiny_lm):
    ids = prompt(8)
    new = generate_tokens(tiny_lm, ids, 12)
    assert new.shape == (1, 12) and new.dtype == torch.int64
    seq = ids
    with torch.no_grad():
        for _ in range(12):  # no cache: the whole sequence each step
            seq = torch.cat([seq, tiny_lm(seq)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(new, seq[:, 8:])


def test_rates_are_positive_and_finite(tiny_lm):
    assert math.isfinite(ms := prefill_latency(tiny_lm, prompt(32), repeats=2)) and ms > 0
    assert math.isfinite(rate := decode_rate(tiny_lm, prompt(4), new_tokens=16, repeats=2)) and rate > 0


def test_ab_generation_times_both_models(tiny_lm):
    result = ab_generation(tiny_lm, tiny_lm, prompt(32), prompt(4), new_tokens=16, repeats=2)
    assert (result.prompt_tokens, result.decode_prompt_tokens, result.new_tokens, result.repeats) == (32, 4, 16, 2)
    for value in (*result.prefill_ms, *result.decode_tps, result.prefill_speedup, result.decode_speedup):
        assert math.isfinite(value) and value > 0


def test_interleaved_calls_each_in_turn():
    order: list[str] = []
    times = interleaved([lambda: order.append("a"), lambda: order.append("b")], repeats=3, warmup=1)
    assert order == ["a", "b"] + ["a", "b"] * 3 and [len(t) for t in times] == [3, 3]


def test_refusals(tiny_lm):
    with pytest.raises(RankscopeError, match="one row"):
        generate_tokens(tiny_lm, prompt(4).repeat(2, 1), 3)
    with pytest.raises(RankscopeError, match="at least 1"):
        generate_tokens(tiny_lm, prompt(4), 0)
    with pytest.raises(RankscopeError, match="does not generate"):
        generate_tokens(torch.nn.Linear(2, 2), prompt(4), 3)
    with pytest.raises(RankscopeError, match="no longer"):
        decode_rate_of(5.0, 4.0, 8)
    assert decode_rate_of(10.0, 110.0, 11) == pytest.approx(100.0)

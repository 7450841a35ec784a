"""Generation speed of a causal LM at batch 1: prefill latency and decode tokens per second, greedy, KV cache on.

A :class:`core.models.language.CausalLM` generates through its transformers model (``model.causal_lm.generate``,
``do_sample=False``, ``use_cache=True``, exactly ``n`` new tokens: ``min_new_tokens = max_new_tokens = n``, so an
end-of-sequence token never stops it early). Two numbers are measured:

- *prefill*: wall milliseconds of generating one token after the prompt, which is the prompt's forward pass
  (filling the KV cache; the head only at the last position) plus one greedy pick: the time to the first token.
- *decode*: new tokens per second once the prompt is in the cache, ``(n - 1) / (t_n - t_1)`` with ``t_n`` and
  ``t_1`` the median times of generating ``n`` and 1 tokens after the same prompt, so the prompt's own pass is
  subtracted out.

Timings are CPU wall times under ``torch.inference_mode`` in this process, on the current thread count (wrap the
calls in :func:`core.profile.context.torch_threads`). :func:`ab_generation` times two models alternately (as
:func:`core.profile.ab.ab_calls` does for forwards; :func:`interleaved` for any number of calls), so load on the machine falls on both alike.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from core.errors import RankscopeError
from core.profile.latency import time_calls

CPU = torch.device("cpu")


def generate_tokens(model: nn.Module, prompt_ids: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """The ``new_tokens`` greedy continuation (1, n) int64 of ``prompt_ids`` (1, T) by ``model`` (a ``CausalLM``).

    Raises
    ------
    RankscopeError
        A model without a transformers ``causal_lm``, a prompt that is not one row of token ids, ``new_tokens`` < 1,
        or a generation that did not return exactly ``new_tokens`` tokens.
    """
    lm = getattr(model, "causal_lm", None)
    if lm is None or not hasattr(lm, "generate"):
        raise RankscopeError(f"{type(model).__name__} does not generate: wrap a transformers causal LM in CausalLM")
    if prompt_ids.ndim != 2 or prompt_ids.shape[0] != 1 or prompt_ids.is_floating_point():
        raise RankscopeError(f"the prompt must be one row of token ids (1, T), got {prompt_ids.dtype} "
                             f"{tuple(prompt_ids.shape)}")
    if new_tokens < 1:
        raise RankscopeError(f"new_tokens must be at least 1, got {new_tokens}")
    ids = prompt_ids.long()
    with torch.inference_mode():
        out = lm.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, use_cache=True,
                          min_new_tokens=new_tokens, max_new_tokens=new_tokens, pad_token_id=0)
    new = out[:, ids.shape[1]:]  # (1, n)
    if new.shape[1] != new_tokens:
        raise RankscopeError(f"generation returned {new.shape[1]} new tokens, not the {new_tokens} asked for")
    return new


def generation_call(model: nn.Module, prompt_ids: torch.Tensor, new_tokens: int) -> Callable[[], torch.Tensor]:
    """A call generating ``new_tokens`` after ``prompt_ids`` (:func:`generate_tokens`), for timing."""
    return lambda: generate_tokens(model, prompt_ids, new_tokens)


def decode_rate_of(first_ms: float, all_ms: float, new_tokens: int) -> float:
    """Tokens per second of decoding: ``new_tokens - 1`` tokens in ``all_ms - first_ms`` milliseconds (the time of
    ``new_tokens`` tokens less that of the first, which carries the prompt's pass).

    Raises
    ------
    RankscopeError
        Fewer than 2 new tokens, or a difference that is not positive (too few tokens to tell apart from noise).
    """
    if new_tokens < 2:
        raise RankscopeError(f"a decode rate needs at least 2 new tokens, got {new_tokens}")
    spent = all_ms - first_ms
    if not spent > 0:
        raise RankscopeError(f"{new_tokens} tokens took no longer than 1 ({all_ms:.2f} vs {first_ms:.2f} ms): "
                             "generate more tokens")
    return (new_tokens - 1) / (spent / 1000.0)


def interleaved(calls: list[Callable[[], object]], repeats: int, warmup: int = 1) -> list[list[float]]:
    """CPU milliseconds of ``repeats`` calls of each of ``calls``, made in turn (one of each per round) after ``warmup``
    untimed calls of each: :func:`core.profile.ab.ab_calls` for any number of calls."""
    for call in calls:
        for _ in range(warmup):
            call()
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for call, samples in zip(calls, times):
            samples += time_calls(call, warmup=0, repeats=1, device=CPU)
    return times


def prefill_latency(model: nn.Module, prompt_ids: torch.Tensor, repeats: int = 3, warmup: int = 1) -> float:
    """Median milliseconds to the first token after ``prompt_ids`` (1, T): the prompt's pass and one greedy pick.

    Parameters
    ----------
    model : a ``CausalLM``.
    prompt_ids : (1, T) token ids, e.g. a 512-token window.
    repeats : timed calls; ``warmup`` untimed calls before them.
    """
    return statistics.median(interleaved([generation_call(model, prompt_ids, 1)], repeats, warmup)[0])


def decode_rate(model: nn.Module, prompt_ids: torch.Tensor, new_tokens: int = 32, repeats: int = 3,
                warmup: int = 1) -> float:
    """Decode tokens per second at batch 1 after ``prompt_ids`` (1, T): :func:`decode_rate_of` the median times of
    generating 1 and ``new_tokens`` tokens, timed alternately ``repeats`` times after ``warmup`` untimed calls each."""
    one, many = interleaved([generation_call(model, prompt_ids, 1), generation_call(model, prompt_ids, new_tokens)],
                            repeats, warmup)
    return decode_rate_of(statistics.median(one), statistics.median(many), new_tokens)


@dataclass(frozen=True)
class GenerationAB:
    """Two models' generation speed measured alternately: prefill medians (ms) and decode rates (tokens/s).

    Attributes
    ----------
    prefill_ms : median ms to the first token after the prefill prompt, (first model, second model).
    decode_tps : decode tokens per second after the decode prompt, (first, second).
    prompt_tokens, decode_prompt_tokens : lengths of the two prompts.
    new_tokens : tokens generated for the decode rate.
    repeats : timed calls of each kind per model.
    """

    prefill_ms: tuple[float, float]
    decode_tps: tuple[float, float]
    prompt_tokens: int
    decode_prompt_tokens: int
    new_tokens: int
    repeats: int

    @property
    def prefill_speedup(self) -> float:
        """First model's prefill time over the second's (> 1: the second is faster)."""
        return self.prefill_ms[0] / self.prefill_ms[1]

    @property
    def decode_speedup(self) -> float:
        """Second model's decode rate over the first's (> 1: the second is faster)."""
        return self.decode_tps[1] / self.decode_tps[0]


def ab_generation(first: nn.Module, second: nn.Module, prompt_ids: torch.Tensor, decode_prompt_ids: torch.Tensor,
                  new_tokens: int = 32, repeats: int = 3, warmup: int = 1) -> GenerationAB:
    """Prefill latency of ``prompt_ids`` and the decode rate after ``decode_prompt_ids`` (each (1, T)) of two models,
    all six calls timed in turn each round (:func:`interleaved`), medians of ``repeats`` rounds.

    Raises
    ------
    RankscopeError
        A model that does not generate the tokens asked for (:func:`generate_tokens`), or a decode time that does
        not grow with the tokens (:func:`decode_rate_of`).
    """
    calls = [generation_call(model, ids, n) for ids, n in ((prompt_ids, 1), (decode_prompt_ids, 1),
                                                           (decode_prompt_ids, new_tokens)) for model in (first, second)]
    ms = [statistics.median(t) for t in interleaved(calls, repeats, warmup)]  # prefill a, b; one a, b; many a, b
    rates = (decode_rate_of(ms[2], ms[4], new_tokens), decode_rate_of(ms[3], ms[5], new_tokens))
    result = GenerationAB((ms[0], ms[1]), rates, int(prompt_ids.shape[1]), int(decode_prompt_ids.shape[1]),
                          new_tokens, repeats)
    if not all(math.isfinite(v) and v > 0 for v in (*result.prefill_ms, *result.decode_tps)):
        raise RankscopeError(f"generation timings are not positive and finite: {result}")
    return result

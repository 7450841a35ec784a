"""What a compressed language model writes next to what its dense model writes: both greedy continuations of one
prompt, and how likely each model finds every token of each.

Each model continues the prompt greedily (``generate(do_sample=False)``, KV cache on) by up to ``new_tokens`` tokens,
fewer where it writes its end-of-text token. Each continuation is then scored under **both** models, teacher-forced
on the prompt and the continuation's own earlier tokens: the natural-log probability of the token under the dense
model and under the compressed one, and their difference ``diff = logprob_compressed - logprob_dense`` (nats). On the
dense continuation a negative ``diff`` is a token the compressed model finds less likely than the model it copies;
identical models give 0 everywhere.

Token texts are the continuation decoded token by token (each token's share of the text decoded so far, so a
character split over two byte-level tokens is shown once, on the second).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd
import torch

from core.errors import RankscopeError
from core.models.language import CausalLM, check_prompt_length

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

COLUMNS = ("token", "id", "logprob_dense", "logprob_compressed", "diff")  # of each continuation's table
DEFAULT_NEW_TOKENS = 32


@dataclass(frozen=True)
class Continuations:
    """The dense and the compressed model's greedy continuations of one prompt, each token scored under both.

    Attributes
    ----------
    prompt : the text continued.
    prompt_tokens : its length in tokens (no special tokens added).
    dense, compressed : one row per generated token of that model's continuation, in order, with the columns of
        :data:`COLUMNS`: the token's text, its id, its log-probability (nats) under the dense and the compressed
        model, and ``diff = logprob_compressed - logprob_dense``.
    """

    prompt: str
    prompt_tokens: int
    dense: pd.DataFrame
    compressed: pd.DataFrame

    @property
    def agreed(self) -> int:
        """How many leading tokens the two continuations share."""
        same = 0
        for a, b in zip(self.dense["id"], self.compressed["id"]):
            if a != b:
                break
            same += 1
        return same


def causal_lm_of(model: torch.nn.Module, role: str = "model") -> CausalLM:
    """``model`` itself when it is a :class:`~core.models.language.CausalLM`, else a one-line :class:`RankscopeError`
    naming ``role`` (``"dense model"``)."""
    if not isinstance(model, CausalLM):
        raise RankscopeError(f"the {role} is a {type(model).__name__}, not a causal language model: continuations "
                             "need a language model (smollm2-135m or hf:DIR)")
    return model


def encode_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str) -> torch.Tensor:
    """The token ids (1, P) int64 of ``prompt``, no special tokens added (as :mod:`core.data.text` tokenises).

    Raises
    ------
    RankscopeError
        An empty prompt (or one that gives no tokens).
    """
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
    if not ids:
        raise RankscopeError("the prompt is empty: give some text for the model to continue")
    return torch.tensor([ids], dtype=torch.long)  # (1, P)


def greedy_ids(model: CausalLM, ids: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """The greedy continuation (N,) of the prompt ``ids`` (1, P) by ``model``: up to ``new_tokens`` ids, fewer where it
    writes its end-of-text token (KV cache on)."""
    device = next(model.parameters()).device
    config = model.causal_lm.generation_config
    pad = config.pad_token_id if config.pad_token_id is not None else config.eos_token_id
    if isinstance(pad, list):
        pad = pad[0]
    with torch.inference_mode():
        out = model.causal_lm.generate(
            input_ids=ids.to(device), attention_mask=torch.ones_like(ids, device=device), max_new_tokens=new_tokens,
            do_sample=False, num_beams=1, use_cache=True, pad_token_id=pad, temperature=None, top_p=None, top_k=None,
        )  # (1, P + N)
    return out[0, ids.shape[1]:].cpu()


def token_logprobs(model: CausalLM, ids: torch.Tensor, start: int) -> torch.Tensor:
    """The log-probability (nats, float64) under ``model`` of each token ``ids[0, start:]`` given the tokens before it,
    (len - start,); ``ids`` (1, L) with ``start >= 1``. Only the logits of those positions are computed."""
    device = next(model.parameters()).device
    n = ids.shape[1] - start
    with torch.inference_mode():
        logits = model.causal_lm(input_ids=ids.to(device), use_cache=False, logits_to_keep=n + 1).logits  # (1, n+1, V)
    logp = torch.log_softmax(logits[0, :-1].double(), dim=-1)  # (n, V): position start-1+i predicts token start+i
    return logp.gather(1, ids[0, start:].to(device).unsqueeze(1)).squeeze(1).cpu()


def token_texts(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> list[str]:
    """Each token's share of the text of ``ids`` decoded together (see the module docstring)."""
    texts, done = [], ""
    for i in range(len(ids)):
        text = tokenizer.decode(ids[: i + 1], clean_up_tokenization_spaces=False)
        if text.startswith(done) and not (text.endswith("\ufffd") and i + 1 < len(ids)):
            texts.append(text[len(done):])
            done = text
        elif text.endswith("\ufffd") and i + 1 < len(ids):  # a character cut by the next token: shown with it
            texts.append("")
        else:  # decoding is not prefix-stable here: the token alone
            texts.append(tokenizer.decode([ids[i]], clean_up_tokenization_spaces=False))
            done = text
    return texts


def scored(dense: CausalLM, compressed: CausalLM, tokenizer: PreTrainedTokenizerBase, prompt_ids: torch.Tensor,
           continuation: torch.Tensor) -> pd.DataFrame:
    """The table of :data:`COLUMNS` of ``continuation`` (N,) after ``prompt_ids`` (1, P), scored under both models."""
    ids = torch.cat([prompt_ids[0], continuation]).unsqueeze(0)  # (1, P + N)
    start = prompt_ids.shape[1]
    if len(continuation) == 0:
        return pd.DataFrame({c: pd.Series(dtype=object if c == "token" else float) for c in COLUMNS})
    lp_dense = token_logprobs(dense, ids, start).numpy()
    lp_compressed = token_logprobs(compressed, ids, start).numpy()
    return pd.DataFrame({
        "token": token_texts(tokenizer, continuation.tolist()),
        "id": continuation.numpy().astype(int),
        "logprob_dense": lp_dense,
        "logprob_compressed": lp_compressed,
        "diff": lp_compressed - lp_dense,
    })


def greedy_continuations(dense: torch.nn.Module, compressed: torch.nn.Module, tokenizer: PreTrainedTokenizerBase,
                         prompt: str, new_tokens: int = DEFAULT_NEW_TOKENS) -> Continuations:
    """Both models' greedy continuations of ``prompt``, every token scored under both (see the module docstring).

    Parameters
    ----------
    dense, compressed : causal language models (:class:`~core.models.language.CausalLM`) of one tokenizer, e.g. a
        model and the same model with a plan applied; only read (eval mode is theirs to set).
    tokenizer : the models' tokenizer (``core.models.language.load_tokenizer(cfg.tokenizer)``).
    prompt : the text to continue.
    new_tokens : the most tokens each model writes.

    Returns
    -------
    Continuations
        The two continuations' tables (token, id, logprob_dense, logprob_compressed, diff).

    Raises
    ------
    RankscopeError
        A model that is not a causal LM, an empty prompt, fewer than one new token, or a prompt whose tokens plus
        ``new_tokens`` exceed the context of the dense model (``core.models.language.check_prompt_length``).
    """
    dense, compressed = causal_lm_of(dense, "dense model"), causal_lm_of(compressed, "compressed model")
    ids = encode_prompt(tokenizer, prompt)
    check_prompt_length(dense, ids.shape[1], new_tokens)
    return Continuations(
        prompt, ids.shape[1],
        dense=scored(dense, compressed, tokenizer, ids, greedy_ids(dense, ids, new_tokens)),
        compressed=scored(dense, compressed, tokenizer, ids, greedy_ids(compressed, ids, new_tokens)),
    )

"""Language modelling: a causal LM's next-token logits against the text's next tokens (perplexity), and against the
uncompressed model's next-token distributions (fidelity).

Outputs are logits (B, T, V): position t of a window predicts its token t + 1. Targets are the next-token ids
(B, T), int64 in ``[0, V)`` (a text data set's items are ``(ids[:-1], ids[1:])`` of a window of T + 1 tokens, see
:mod:`core.data.text`). Every metric is a mean over **tokens**, pooled over the windows scored (all windows have the
same length, so it is also the mean of the windows' means); a tally counts windows as its samples. Sums are taken
in float64 over chunks of :data:`ROWS` positions, which bounds the memory of the (positions, V) softmax.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.errors import RankscopeError
from core.task.logits import check_logits
from core.task.metric import Metric

NAME = "language-modelling"
FIDELITY_NAME = "language-fidelity"
ROWS = 2048  # positions per chunk of a tally's sums: 2048 x 49,152 float32 logits are 403 MB


def _next_ids(targets: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``targets`` as (B, T) int64 ids on ``logits``' device, checked against the (B, T, V) ``logits``."""
    ids = torch.as_tensor(targets, device=logits.device)
    if ids.shape != logits.shape[:2] or ids.is_floating_point():
        raise RankscopeError(f"the {NAME} task needs the next-token ids (batch, tokens) of its outputs "
                             f"{tuple(logits.shape)}, but the targets are {ids.dtype} of shape {tuple(ids.shape)} "
                             "(score a language model on a text data set: shakespeare)")
    ids = ids.long()
    if bool((ids < 0).any()) or bool((ids >= logits.shape[2]).any()):
        raise RankscopeError(f"the {NAME} task got target ids outside the vocabulary [0, {logits.shape[2]})")
    return ids


def _chunks(*tensors: torch.Tensor) -> Iterator[tuple[torch.Tensor, ...]]:
    """The (B, T, ...) tensors flattened to (B·T, ...) and cut into matching chunks of :data:`ROWS` rows, float32 logits."""
    flat = [t.detach().reshape(-1, *t.shape[2:]) for t in tensors]
    for start in range(0, len(flat[0]), ROWS):
        yield tuple(t[start:start + ROWS].float() if t.is_floating_point() else t[start:start + ROWS] for t in flat)


@dataclass
class LanguageTally:
    """Summed next-token NLL and top-1 hits over every token added; :meth:`result` gives the means."""

    seen: int = 0  # windows
    tokens: int = 0
    nll: float = 0.0
    hits: int = 0

    def add(self, outputs: torch.Tensor, targets: torch.Tensor, reference_outputs: torch.Tensor | None = None) -> None:
        """Count one batch: ``outputs`` (B, T, V) logits, ``targets`` (B, T) next-token ids; ``reference_outputs`` unused.

        Raises
        ------
        RankscopeError
            Outputs that are not (B, T, V) logits, or targets that are not their next-token ids.
        """
        logits = check_logits(outputs, NAME, ndim=3)
        ids = _next_ids(targets, logits)
        for rows, want in _chunks(logits, ids):  # (n, V), (n,)
            self.nll += float(F.cross_entropy(rows, want, reduction="sum").double())
            self.hits += int((rows.argmax(dim=1) == want).sum())
        self.tokens += ids.numel()
        self.seen += len(ids)

    def result(self) -> dict[str, float]:
        """``perplexity`` = exp(``nll``), ``nll`` (mean next-token negative log-likelihood, nats), ``token_accuracy``."""
        if not self.tokens:
            raise RankscopeError(f"the {NAME} task has no tokens to score")
        nll = self.nll / self.tokens
        return {"perplexity": math.exp(nll), "nll": nll, "token_accuracy": self.hits / self.tokens}


class LanguageModellingTask:
    """Score a causal LM's next-token logits against the text.

    Metrics, over all N tokens predicted (every position of every window scored):

    - ``perplexity``: exp of the mean next-token negative log-likelihood; the headline, lower is better.
    - ``nll``: that mean, -1/N Σ log p(token t+1 | tokens ≤ t), in nats; the loss (next-token cross-entropy), the same
      number transformers reports as ``model(ids, labels=ids).loss`` for one window.
    - ``token_accuracy``: fraction of positions whose highest logit is the next token.
    """

    name = NAME
    metrics = (
        Metric("perplexity", False, "exp(mean next-token negative log-likelihood) over the tokens", label="perplexity"),
        Metric("nll", False, "mean next-token negative log-likelihood (cross-entropy), in nats", label="NLL"),
        Metric("token_accuracy", True, "fraction of tokens whose highest logit is the next token", fraction=True,
               label="next-token top-1"),
    )
    headline = "perplexity"
    loss_metric = "nll"
    needs_labels = True  # the next-token ids
    needs_reference = False
    fidelity = FIDELITY_NAME

    def tally(self) -> LanguageTally:
        """An empty :class:`LanguageTally`."""
        return LanguageTally()

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, reference_outputs: torch.Tensor | None = None) -> torch.Tensor:
        """Mean next-token cross-entropy of ``outputs`` (B, T, V) against ``targets`` (B, T); ``reference_outputs`` unused."""
        logits = check_logits(outputs, NAME, ndim=3)
        ids = _next_ids(targets, logits)
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[2]), ids.reshape(-1))


def _pair(outputs: torch.Tensor, reference_outputs: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    if reference_outputs is None:
        raise RankscopeError(f"the {FIDELITY_NAME} task compares with the original model: pass its outputs as "
                             "reference_outputs")
    out = check_logits(outputs, FIDELITY_NAME, ndim=3)
    ref = check_logits(reference_outputs, FIDELITY_NAME, "original model's outputs", ndim=3)
    if out.shape != ref.shape:
        raise RankscopeError(f"the {FIDELITY_NAME} task compares logits of the same shape, but the outputs have shape "
                             f"{tuple(out.shape)} and the original model's {tuple(ref.shape)}")
    return out, ref


def _kl_sum(outputs: torch.Tensor, reference_outputs: torch.Tensor) -> torch.Tensor:
    """Σ over rows of KL(softmax(reference) ‖ softmax(outputs)) in nats, both (n, V) float logits."""
    return F.kl_div(F.log_softmax(outputs, dim=1), F.log_softmax(reference_outputs, dim=1), reduction="sum",
                    log_target=True)


@dataclass
class LanguageFidelityTally:
    """Summed per-token KL to the original and top-1 agreements; :meth:`result` gives the means over tokens."""

    seen: int = 0  # windows
    tokens: int = 0
    kl: float = 0.0
    agree: int = 0

    def add(self, outputs: torch.Tensor, targets: torch.Tensor, reference_outputs: torch.Tensor | None = None) -> None:
        """Count one batch of compressed ``outputs`` against the original's ``reference_outputs``, both (B, T, V);
        ``targets`` is unused.

        Raises
        ------
        RankscopeError
            No reference outputs, or outputs that are not (B, T, V) logits of the reference's shape.
        """
        out, ref = _pair(outputs, reference_outputs)
        for mine, theirs in _chunks(out, ref):  # (n, V) each
            self.kl += float(_kl_sum(mine, theirs).double())
            self.agree += int((mine.argmax(dim=1) == theirs.argmax(dim=1)).sum())
        self.tokens += out.shape[0] * out.shape[1]
        self.seen += out.shape[0]

    def result(self) -> dict[str, float]:
        """``kl`` (mean per token, nats) and ``agreement`` (fraction of tokens) over every token added."""
        if not self.tokens:
            raise RankscopeError(f"the {FIDELITY_NAME} task has no tokens to score")
        return {"kl": self.kl / self.tokens, "agreement": self.agree / self.tokens}


class LanguageFidelityTask:
    """Compare a compressed causal LM's next-token distributions with the uncompressed model's on the same windows.

    Metrics, over all N token positions:

    - ``kl``: mean KL(p_original ‖ p_compressed) of the next-token softmax distributions, in nats; the headline and
      the loss (distillation).
    - ``agreement``: fraction of positions whose most likely next token is the original's.
    """

    name = FIDELITY_NAME
    metrics = (
        Metric("kl", False, "mean KL(original ‖ compressed) of the next-token distributions, in nats, per token",
               label="KL divergence"),
        Metric("agreement", True, "fraction of tokens whose most likely next token is the original model's",
               fraction=True, label="top-1 token agreement"),
    )
    headline = "kl"
    loss_metric = "kl"
    needs_labels = False
    needs_reference = True
    fidelity = FIDELITY_NAME

    def tally(self) -> LanguageFidelityTally:
        """An empty :class:`LanguageFidelityTally`."""
        return LanguageFidelityTally()

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, reference_outputs: torch.Tensor | None = None) -> torch.Tensor:
        """Mean per-token KL(softmax(reference_outputs) ‖ softmax(outputs)); ``targets`` is unused."""
        out, ref = _pair(outputs, reference_outputs)
        vocab = out.shape[2]
        return _kl_sum(out.float().reshape(-1, vocab), ref.detach().float().reshape(-1, vocab)) / (out.shape[0] * out.shape[1])

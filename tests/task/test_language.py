"""The language-modelling and language-fidelity tasks: perplexity, NLL, next-token top-1, KL and agreement per token,
on logits whose values are known; their errors; and evaluate() choosing the task of a text data set."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from core.data.text import TextWindows
from core.errors import RankscopeError
from core.profile import evaluate, evaluate_tasks, profile_tasks
from core.task import get_task
from core.task import language

V = 4


def _logits(target_logit: float, targets: torch.Tensor) -> torch.Tensor:
    """(B, T, V) logits of 0 except ``target_logit`` at each target id."""
    out = torch.zeros(*targets.shape, V)
    out.scatter_(2, targets[..., None], target_logit)
    return out


def test_registered_with_metrics_headline_and_counterpart():
    lm, fid = get_task("language-modelling"), get_task("language-fidelity")
    assert [m.name for m in lm.metrics] == ["perplexity", "nll", "token_accuracy"]
    assert [m.higher_is_better for m in lm.metrics] == [False, False, True]
    assert (lm.headline, lm.loss_metric, lm.needs_labels, lm.needs_reference) == ("perplexity", "nll", True, False)
    assert [m.name for m in fid.metrics] == ["kl", "agreement"]
    assert (fid.headline, fid.loss_metric, fid.needs_labels, fid.needs_reference) == ("kl", "kl", False, True)
    assert lm.fidelity == fid.fidelity == "language-fidelity"


def test_perplexity_of_known_probabilities():
    targets = torch.tensor([[0, 1, 2], [3, 3, 0]])
    tally = get_task("language-modelling").tally()
    tally.add(_logits(math.log(3.0), targets), targets)  # p(target) = 3 / (3 + 3) = 1/2 at every position
    result = tally.result()
    assert result["nll"] == pytest.approx(math.log(2.0), abs=1e-6)
    assert result["perplexity"] == pytest.approx(2.0, abs=1e-5)
    assert result["token_accuracy"] == 1.0
    assert (tally.seen, tally.tokens) == (2, 6)


def test_uniform_logits_give_the_vocabulary_size_and_accuracy_counts_tokens():
    targets = torch.tensor([[0, 1, 2, 3]])
    tally = get_task("language-modelling").tally()
    tally.add(torch.zeros(1, 4, V), targets)  # argmax of a tie is id 0: one hit of four
    assert tally.result()["perplexity"] == pytest.approx(V, rel=1e-6)
    assert tally.result()["token_accuracy"] == 0.25


def test_means_are_over_tokens_pooled_over_batches_and_chunks(monkeypatch):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, V, generator=gen)
    targets = torch.randint(0, V, (3, 5), generator=gen)
    whole = get_task("language-modelling").tally()
    whole.add(logits, targets)
    monkeypatch.setattr(language, "ROWS", 4)  # 15 positions in chunks of 4
    split = get_task("language-modelling").tally()
    split.add(logits[:1], targets[:1])
    split.add(logits[1:], targets[1:])
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
    assert split.result()["nll"] == pytest.approx(float(expected), abs=1e-6)
    assert split.result() == pytest.approx(whole.result(), rel=1e-6)  # float32 sums of other chunks


def test_loss_is_the_nll_and_differentiable():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, V, generator=gen, requires_grad=True)
    targets = torch.randint(0, V, (2, 3), generator=gen)
    task = get_task("language-modelling")
    loss = task.loss(logits, targets)
    loss.backward()
    tally = task.tally()
    tally.add(logits, targets)
    assert float(loss.detach()) == pytest.approx(tally.result()["nll"], abs=1e-6)
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_fidelity_of_known_distributions():
    ref = torch.log(torch.tensor([[[0.5, 0.25, 0.25, 1e-30], [0.25, 0.25, 0.25, 0.25]]]))  # (1, 2, 4)
    out = torch.log(torch.tensor([[[0.25, 0.25, 0.25, 0.25], [0.25, 0.25, 0.25, 0.25]]]))
    tally = get_task("language-fidelity").tally()
    tally.add(out, torch.zeros(1, 2, dtype=torch.long), ref)
    kl_first = 0.5 * math.log(0.5 / 0.25)  # + 0.25 log(1) twice, + 0 log 0
    assert tally.result()["kl"] == pytest.approx(kl_first / 2, abs=1e-6)  # the second position's KL is 0
    assert tally.result()["agreement"] == 1.0  # ties: argmax picks id 0 in both
    same = get_task("language-fidelity").tally()
    same.add(ref, None, ref)
    assert same.result() == pytest.approx({"kl": 0.0, "agreement": 1.0}, abs=1e-7)
    assert float(get_task("language-fidelity").loss(out, None, ref)) == pytest.approx(kl_first / 2, abs=1e-6)


def test_agreement_is_a_fraction_of_tokens():
    ref = torch.eye(V)[None]  # (1, 4, 4): position t prefers id t
    out = torch.eye(V)[None].roll(1, dims=2)  # position t prefers id t + 1 ...
    out[0, 0] = torch.eye(V)[0]  # ... except position 0
    tally = get_task("language-fidelity").tally()
    tally.add(out, None, ref)
    assert tally.result()["agreement"] == 0.25


@pytest.mark.parametrize("outputs,targets,match", [
    (torch.zeros(2, V), torch.zeros(2, dtype=torch.long), r"shape \(batch, tokens, vocabulary\).*\(2, 4\)"),
    (torch.zeros(1, 3, V), torch.zeros(1, 2, dtype=torch.long), r"next-token ids.*shape \(1, 2\)"),
    (torch.zeros(1, 3, V), torch.zeros(1, 3), r"torch.float32"),
    (torch.zeros(1, 3, V), torch.tensor([[0, 1, V]]), r"outside the vocabulary \[0, 4\)"),
])
def test_bad_outputs_and_targets_are_one_line_errors(outputs, targets, match):
    with pytest.raises(RankscopeError, match=match):
        get_task("language-modelling").tally().add(outputs, targets)


def test_fidelity_needs_a_reference_of_the_same_shape():
    with pytest.raises(RankscopeError, match="pass its outputs as reference_outputs"):
        get_task("language-fidelity").tally().add(torch.zeros(1, 2, V), None)
    with pytest.raises(RankscopeError, match=r"\(1, 2, 4\) and the original model's \(1, 3, 4\)"):
        get_task("language-fidelity").tally().add(torch.zeros(1, 2, V), None, torch.zeros(1, 3, V))


def test_no_tokens_is_an_error():
    with pytest.raises(RankscopeError, match="no tokens"):
        get_task("language-modelling").tally().result()


class Bigram(nn.Module):
    """Logits of the next token from the current one: a seeded embedding onto the vocabulary."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.table = nn.Embedding(V, V)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table(ids)  # (B, T, V)


def test_evaluate_scores_text_windows_under_their_task():
    ids = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 3, 2, 1])
    data = TextWindows([("a", ids)], window=3)  # windows at 0, 3, 6: ids[s:s + 4]
    model = Bigram().eval()
    scores = evaluate(model, data)
    assert scores.task == "language-modelling" and scores.samples == 3
    inputs = torch.stack([ids[s:s + 3] for s in (0, 3, 6)])
    targets = torch.stack([ids[s + 1:s + 4] for s in (0, 3, 6)])
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(model(inputs).reshape(-1, V), targets.reshape(-1))
    assert scores["nll"] == pytest.approx(float(expected), abs=1e-6)
    assert scores["perplexity"] == pytest.approx(math.exp(float(expected)), rel=1e-6)
    tasks = profile_tasks(data)
    assert {role: t.name for role, t in tasks.items()} == {"lm": "language-modelling", "fidelity": "language-fidelity"}
    lm, fid = evaluate_tasks(model, data, list(tasks.values()), reference=model)
    assert lm["nll"] == scores["nll"] and (fid["kl"], fid["agreement"]) == (0.0, 1.0)

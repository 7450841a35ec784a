"""Plans on a causal language model's linears: make_plan and apply_plan on token-id inputs, the tied ``lm_head`` and
the embedding left dense, aa_svd calibrated on token windows; and on the real smollm2-135m (slow) aa_svd's output
error on real calibration activations never above svd's at the same rank."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from core.decompose.registry import get_method
from core.layers import layer_inputs
from core.models.cfg import ModelCfg
from core.plan import apply_plan
from core.plan.starting import make_plan, tied_weights
from core.profile import example_input
from tests.helpers import tiny_llama

VOCAB, WIDTH, FFN, LAYERS, HEADS, KV_HEADS, TOKENS = 64, 32, 48, 2, 4, 2, 16  # a tiny llama
LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


@pytest.fixture(scope="module")
def tiny_lm():
    """``(model, cfg)``: a seeded 2-layer llama with tied embeddings (grouped-query attention) as a CausalLM."""
    from core.models.language import CausalLM

    model = CausalLM(tiny_llama(vocab_size=VOCAB, hidden_size=WIDTH, intermediate_size=FFN, num_hidden_layers=LAYERS,
                                num_attention_heads=HEADS, num_key_value_heads=KV_HEADS)).eval()
    return model, ModelCfg("tiny-llama", (TOKENS,), VOCAB, vocab_size=VOCAB)


@pytest.mark.parametrize("method", ["svd", "aa_svd"])
def test_plan_covers_the_linears_and_leaves_tied_head_and_embedding(tiny_lm, method):
    model, cfg = tiny_lm
    plan = make_plan(model, cfg, method, ratio=0.5)
    assert set(plan.layers) == {f"model.layers.{i}.{name}" for i in range(LAYERS) for name in LINEARS}
    assert "lm_head" in plan.skipped and "tied" in plan.skipped["lm_head"]
    assert "model.embed_tokens" in plan.skipped
    assert tied_weights(model) == {"lm_head": "model.embed_tokens"}


def test_apply_plan_on_token_calibration(tiny_lm):
    model, cfg = tiny_lm
    plan = make_plan(model, cfg, "aa_svd", ratio=0.5)
    calibration = torch.randint(0, VOCAB, (3, TOKENS), generator=torch.Generator().manual_seed(1))
    new, report = apply_plan(model, plan, calibration=calibration)
    assert len(report.applied) == len(plan.layers)
    assert new.lm_head.weight is new.model.embed_tokens.weight  # still tied, still dense
    x = example_input(cfg, 2)
    with torch.no_grad():
        dense, out = model(x), new(x)
    assert out.shape == dense.shape == (2, TOKENS, VOCAB) and torch.isfinite(out).all()
    assert not torch.equal(out, dense)
    assert sum(p.numel() for p in new.parameters()) < sum(p.numel() for p in model.parameters())


def output_error(module, rank: int, method: str, x: torch.Tensor) -> float:
    """``||(W - W_r) X||`` of ``module`` built by ``method`` at ``rank``, calibrated on ``x`` (its inputs)."""
    built = get_method(method).build(module, rank, calibration=x if method == "aa_svd" else None)
    with torch.no_grad():
        return float((module(x).double() - built(x).double()).norm())


@pytest.mark.slow  # the real 135M model, two 128-token windows of the calibration plays
def test_aa_svd_output_error_never_above_svd_on_real_activations(smollm2):
    from core.data.text import load_shakespeare

    model, cfg = smollm2
    windows = load_shakespeare(dataclasses.replace(cfg, input_size=(128,)), "train", count=2)
    tokens = torch.stack([windows[i][0] for i in range(len(windows))])  # (2, 128) int64
    paths = ["model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj", "model.layers.15.mlp.gate_proj"]
    inputs = layer_inputs(model, paths, tokens)
    for path in paths:
        module, x = model.get_submodule(path), inputs[path]
        assert x.shape[:2] == (2, 128) and x.dtype == torch.float32
        for rank in (8, 64, 192, 384):
            svd, aa = output_error(module, rank, "svd", x), output_error(module, rank, "aa_svd", x)
            assert aa <= svd * (1 + 1e-5), (path, rank, aa, svd)


@pytest.mark.slow  # the real 135M model: a plan over its 210 linears, applied to two of its layers
def test_plan_on_smollm2_compresses_chosen_layers(smollm2):
    from core.data.text import load_shakespeare

    model, cfg = smollm2
    plan = make_plan(model, cfg, "aa_svd", ratio=0.8)
    assert len(plan.layers) == 30 * len(LINEARS) and "lm_head" in plan.skipped
    chosen = {p: e for p, e in plan.layers.items() if p.startswith(("model.layers.0.", "model.layers.15."))}
    windows = load_shakespeare(dataclasses.replace(cfg, input_size=(64,)), "train", count=2)
    tokens = torch.stack([windows[i][0] for i in range(len(windows))])  # (2, 64)
    new, report = apply_plan(model, dataclasses.replace(plan, layers=chosen), calibration=tokens)
    assert sorted(report.applied) == sorted(chosen) and len(chosen) == 14
    assert new.lm_head.weight is new.model.embed_tokens.weight
    assert type(model.get_submodule("model.layers.0.mlp.down_proj")).__name__ == "Linear"  # the original untouched
    with torch.no_grad():
        dense, out = model(tokens), new(tokens)
    loss = [torch.nn.functional.cross_entropy(z[:, :-1].flatten(0, 1), tokens[:, 1:].flatten()) for z in (dense, out)]
    assert torch.isfinite(out).all() and float(loss[1]) < float(loss[0]) + 0.5  # two layers at 80 %: a small loss

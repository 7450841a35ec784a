"""``rankscope bench lm`` end to end on a tiny random llama (token windows of random ids): every plan built from one
capture of the calibration inputs, recovered by a KL distillation, timed, and the last line in its format; the real
smollm2-135m only in a slow test."""
from __future__ import annotations

import math
import re

import pytest
import torch

from core.bench.language import (PLANS, bench, build_plan, compressible_linears, headline, linear_params,
                                 plans_at)
from core.data.text import TextWindows
from core.layers import layer_inputs
from core.models.cfg import ModelCfg
from core.plan import apply_plan
from core.recovery import RecoveryConfig
from tests.helpers import tiny_llama

VOCAB, TOKENS = 64, 16
LAST = re.compile(r"^lm: perplexity at 80 % params: svd (\S+), aa_svd (\S+), allocated (\S+) \(dense (\S+)\)$")


@pytest.fixture(scope="module")
def tiny():
    """``(model, cfg, windows)``: a seeded 2-layer llama with tied embeddings as a CausalLM, and text windows of
    seeded random ids (two works) for evaluation, calibration and recovery."""
    from core.models.language import CausalLM

    model = CausalLM(tiny_llama(vocab_size=VOCAB)).eval()
    g = torch.Generator().manual_seed(1)
    works = [(name, torch.randint(0, VOCAB, (200,), generator=g)) for name in ("a", "b")]
    return model, ModelCfg("tiny-llama", (TOKENS,), VOCAB, vocab_size=VOCAB), TextWindows(works, TOKENS)


def test_bench_runs_every_plan_and_prints_the_last_line(tiny):
    model, cfg, windows = tiny
    lines: list[str] = []
    config = RecoveryConfig(steps=2, batch_size=2, lr=1e-3, alpha=0.9, augment=False)
    dense, rows = bench(model, cfg, windows, windows, windows, fractions=(0.8, 0.6), config=config, repeats=3,
                        prefill_tokens=TOKENS, decode_prompt=4, new_tokens=24, log=lines.append)
    assert [(r.fraction, r.plan) for r in rows] == [(f, p) for f in (0.8, 0.6) for p in PLANS]
    layers = compressible_linears(model)
    assert len(layers) == 14 and "lm_head" not in layers  # q, k, v, o, gate, up, down of 2 layers; tied head dense
    full = linear_params(model, layers)
    for row in rows:
        assert math.isfinite(row.perplexity) and math.isfinite(row.recovered)
        assert row.linear_params <= row.fraction * full + 64, row  # within a rank step of the budget
        assert row.params < sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
        assert row.speed.new_tokens == 24 and all(v > 0 for v in (*row.speed.prefill_ms, *row.speed.decode_tps))
        assert row.peak_mb > row.size_mb > 0
    last = headline(dense, rows)
    match = LAST.match(last)
    assert match and all(math.isfinite(float(v)) for v in match.groups()), last
    assert float(match.group(4)) == pytest.approx(dense, abs=0.005)
    assert any(line.startswith("dense: perplexity") for line in lines)


def test_build_plan_matches_apply_plan(tiny):
    model, cfg, windows = tiny
    layers = compressible_linears(model)
    tokens = torch.stack([windows[i][0] for i in range(4)])
    inputs = layer_inputs(model, layers, tokens)
    plan = plans_at(model, cfg, layers, 0.6, ("aa_svd",), None, None)["aa_svd"]
    ours = build_plan(model, plan, inputs)
    theirs, _ = apply_plan(model, plan, calibration=tokens)
    with torch.no_grad():
        torch.testing.assert_close(ours(tokens), theirs(tokens), rtol=1e-4, atol=1e-5)
    assert ours.lm_head.weight is ours.model.embed_tokens.weight


@pytest.mark.slow  # the real smollm2-135m: one plan at 80 % on one evaluation window, no recovery or timing
def test_bench_on_smollm2(smollm2):
    import dataclasses

    from core.data.text import load_shakespeare

    model, cfg = smollm2
    evaluation = load_shakespeare(cfg, "test", count=1)
    calibration = load_shakespeare(dataclasses.replace(cfg, input_size=(128,)), "train", count=2)
    dense, rows = bench(model, cfg, evaluation, calibration, calibration, fractions=(0.8,), plans=("aa_svd",),
                        config=RecoveryConfig(steps=0, augment=False), timing=False, log=lambda _: None)
    assert len(rows) == 1 and math.isfinite(rows[0].perplexity) and rows[0].perplexity > dense

"""``rankscope bench attention`` at tiny settings: table columns, ratios against softmax, the last line."""
from __future__ import annotations

import re

import pytest

from core.bench.attention import accuracy_table, length_sweep, lm_summary_line, perplexity_table
from core.cli import main

pytestmark = pytest.mark.slow  # benchmarks: each runs the real measurement end to end


def test_length_sweep_ratios_are_against_softmax_at_the_same_length():
    table = length_sweep(["nmf", "pnmf"], [32, 64], repeats=1)
    assert list(table["variant"].unique()) == ["softmax", "nmf", "pnmf"]
    assert {"latency_ms", "memory_mb", "activation_mb", "gflops", "memory_method", "backend",
            "latency_ratio", "memory_ratio", "flops_ratio"} <= set(table.columns)
    assert (table["memory_method"] == "torch-profiler").all()
    for n, rows in table.groupby("seq_len"):
        base = rows[rows["variant"] == "softmax"].iloc[0]
        assert base["backend"] == "flash (cpu)"
        assert rows["memory_ratio"].tolist() == pytest.approx((rows["memory_mb"] / base["memory_mb"]).tolist())
        assert rows["flops_ratio"].tolist() == pytest.approx((rows["gflops"] / base["gflops"]).tolist())
        assert base[["latency_ratio", "memory_ratio", "flops_ratio"]].tolist() == [1.0, 1.0, 1.0]
    assert (table["gflops"] > 0).all()


def test_accuracy_table_scores_each_variant_zero_shot_and_fine_tuned():
    table, reference = accuracy_table(["softmax", "nmf"], samples=64, steps=2, batch_size=8)
    assert table["variant"].tolist() == ["softmax", "nmf"]
    softmax = table.iloc[0]
    assert softmax["zero_shot"] == pytest.approx(reference)  # the swap is the model itself
    assert table["gap_points"].tolist() == pytest.approx((reference - table["fine_tuned"]).tolist())
    assert table["params"].iloc[1] < softmax["params"]  # nmf has no query or key projections


def test_cli_prints_the_tables_and_ends_with_the_summary_line(capsys):
    assert main(["bench", "attention", "--variants", "nmf", "--lengths", "32", "64", "--repeats", "1",
                 "--samples", "32", "--steps", "2", "--finetune-batch", "8"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"attention: nmf memory ratio at 64 = \d+\.\d{3}, accuracy gap = -?\d+\.\d{2} points", out[-1])
    assert any(line.startswith("target nmf within 1.5 points after fine-tune:") for line in out)
    assert any("memory by torch-profiler" in line for line in out)


def test_perplexity_table_scores_causal_variants_in_chosen_layers_of_smollm2():
    table, reference = perplexity_table(["softmax", "performer"], layers=[-1], window=32, train_windows=1, test_windows=1,
                                        steps=1, batch_size=1)
    assert table["variant"].tolist() == ["softmax", "performer"]
    assert table["zero_shot"].iloc[0] == pytest.approx(reference, rel=1e-4)  # the causal softmax is the model itself
    assert table["ratio"].tolist() == pytest.approx((table["fine_tuned"] / reference).tolist())
    assert (table[["zero_shot", "fine_tuned"]] > 1).all().all()
    line = lm_summary_line(table, reference, 1)
    assert re.fullmatch(r"attention lm: perplexity \d+\.\d{2}; in 1 layers, zero-shot -> fine-tuned: softmax .+, performer .+", line)

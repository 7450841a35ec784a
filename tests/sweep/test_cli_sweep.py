"""`rankscope sweep`, `rankscope allocate` and `rankscope bench sweep`: files written, bad input exits 2."""
from __future__ import annotations

import re

import pytest
import torch

from core.cli import main
from core.decompose import get_method
from core.decompose.rank import round_rank
from core.models import create_model
from core.plan import load_plan
from core.sweep import read_table


@pytest.mark.slow  # over a second on the 2-core machine
def test_sweep_writes_the_table_and_allocate_a_plan(tmp_path, capsys):
    common = ["--layers", "fc", "layer3.0.downsample.0", "--points", "3", "--samples", "32", "--threads", "1",
              "--cache-dir", str(tmp_path / "cache")]
    assert main(["sweep", "fmnist-resnet", *common, "--out", str(tmp_path / "t.csv")]) == 0
    table = read_table(tmp_path / "t.csv")
    assert list(table["layer"]) == ["", "layer3.0.downsample.0", "fc"] + ["layer3.0.downsample.0"] * 3 + ["fc"] * 3
    assert (table["samples"] == 32).all()
    assert main(["allocate", "fmnist-resnet", "--target-params", "0.99", "--allocator", "greedy", *common,
                 "--out", str(tmp_path / "p.yaml")]) == 0
    assert "meets the target 0.99" in capsys.readouterr().out
    plan = load_plan(tmp_path / "p.yaml")
    assert plan.model == "fmnist-resnet" and set(plan.layers) | set(plan.skipped) == {"fc", "layer3.0.downsample.0"}


def test_ci_sizes_the_sweep_subset(tmp_path, capsys):
    assert main(["sweep", "fmnist-resnet", "--ci", "5", "--layers", "fc", "--points", "1", "--threads", "1",
                 "--no-cache", "--out", str(tmp_path / "t.csv")]) == 0
    assert "385 samples keep every point's top-1 within ±5 points at 95 % confidence" in capsys.readouterr().err
    assert (read_table(tmp_path / "t.csv")["samples"] == 385).all()


def test_early_stop_marks_the_points_it_stopped(tmp_path, capsys):
    assert main(["sweep", "fmnist-resnet", "--early-stop", "5", "--layers", "fc", "--points", "3", "--samples", "1000",
                 "--threads", "1", "--no-cache", "--out", str(tmp_path / "t.csv")]) == 0
    table = read_table(tmp_path / "t.csv")
    assert table.loc[table["rank"] == "1", "samples"].item() == 256  # fc at rank 1 is surely far below after one batch
    assert table.loc[table["rank"] == "10", "samples"].item() == 1000  # full rank: the dense model's scores, never stopped
    assert (table.loc[table["method"] == "dense", "samples"] == 1000).all()


def test_sweep_writes_a_proxy_table_through_the_cache(tmp_path, capsys):
    common = ["--layers", "fc", "layer3.0.downsample.0", "--points", "3", "--samples", "32", "--threads", "1",
              "--cache-dir", str(tmp_path / "cache")]
    assert main(["sweep", "fmnist-resnet", "--proxy", "whitened", *common, "--out", str(tmp_path / "t.csv")]) == 0
    assert "(6 points, predicted by the whitened proxy)" in capsys.readouterr().out
    table = read_table(tmp_path / "t.csv")
    assert list(table["layer"]) == ["", "layer3.0.downsample.0", "fc"] + ["layer3.0.downsample.0"] * 3 + ["fc"] * 3
    assert (table["samples"] == 32).all()
    for layer in ("fc", "layer3.0.downsample.0"):  # the output error falls with the rank, to none at full rank
        loss = table.loc[(table["layer"] == layer) & (table["method"] == "svd"), "loss"]
        assert loss.is_monotonic_decreasing and loss.iloc[-1] == pytest.approx(table["loss"].iloc[0])
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert cached and all("fashion-mnist-32-0-whitened-d0.01_" in name for name in cached)
    assert main(["sweep", "fmnist-resnet", "--proxy", "whitened", *common, "--out", str(tmp_path / "again.csv")]) == 0
    assert (tmp_path / "again.csv").read_text() == (tmp_path / "t.csv").read_text()


def test_allocate_without_a_sweep(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the layer timings' cache goes under the current folder
    assert main(["allocate", "fmnist-resnet", "--target-flops", "0.5", "--allocator", "energy", "--out", "p.json"]) == 0
    out = capsys.readouterr().out
    assert "meets the target 0.5" in out and "ms as the layers' timings sum" in out
    assert len(load_plan(tmp_path / "p.json").layers) == 10
    assert len(list((tmp_path / ".rankscope-cache" / "latency").glob("*.json"))) == 1


@pytest.mark.slow  # times every candidate layer for real
def test_a_latency_target_out_of_reach_writes_the_closest_plan_and_says_so(tmp_path, capsys):
    assert main(["allocate", "fmnist-resnet", "--target-latency", "0.01", "--allocator", "spectrum", "--threads", "1",
                 "--no-cache", "--out", str(tmp_path / "p.yaml")]) == 0
    captured = capsys.readouterr()
    assert "MISSES the target 0.01" in captured.out
    assert captured.err.strip().startswith("rankscope: the latency target 0.01 is out of reach for the spectrum allocator")
    plan, model = load_plan(tmp_path / "p.yaml"), create_model("fmnist-resnet")[0]
    assert plan.layers  # every rank as --target-latency rounds it by default: to multiples of 16, where the layer has them
    assert all(round_rank(get_method(e.method), model.get_submodule(p), e.rank, 16) == e.rank for p, e in plan.layers.items())


@pytest.mark.parametrize(("args", "message"), [
    (["sweep", "fmnist-resnet", "--layers", "fcc", "--out", "x.csv"], "no layer named 'fcc'"),
    (["sweep", "fmnist-resnet", "--methods", "aa_svd", "--out", "x.csv"], "aa_svd is data-aware"),
    (["sweep", "fmnist-resnet", "--proxy", "energy", "--methods", "tt", "--out", "x.csv"], "the energy proxy does not score tt"),
    (["sweep", "fmnist-resnet", "--proxy", "taylor", "--latency", "--out", "x.csv"], "--latency times the built layers"),
    (["sweep", "fmnist-resnet", "--hybrid", "0.5", "--out", "x.csv"], "--hybrid re-scores exactly what a proxy chose"),
    (["allocate", "fmnist-resnet", "--target-latency", "0.5", "--proxy", "fisher", "--hybrid", "--out", "x.yaml"],
     "a latency target needs timed layers"),
    (["allocate", "fmnist-resnet", "--target-flops", "0.5", "--proxy", "fisher", "--allocator", "uniform", "--out", "x.yaml"],
     "the uniform allocator reads none"),
    (["allocate", "fmnist-resnet", "--target-flops", "0.5", "--methods", "cp", "--allocator", "energy", "--out", "x.yaml"],
     "cp has no singular values"),
    (["sweep", "fmnist-resnet", "--ci", "2", "--confidence", "1", "--out", "x.csv"], "confidence must be in (0, 1)"),
    (["sweep", "srmd-x2", "--ci", "2", "--out", "x.csv"], "PSNR (dB) is not: give --samples"),
    (["sweep", "fmnist-resnet", "--early-stop", "5", "--proxy", "energy", "--out", "x.csv"], "a --proxy table evaluates none"),
    (["sweep", "srmd-x2", "--early-stop", "5", "--layers", "body.0", "--out", "x.csv"], "PSNR (dB) is not"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


@pytest.mark.parametrize("args", [["allocate", "fmnist-resnet", "--out", "x.yaml"],
                                  ["allocate", "fmnist-resnet", "--target-flops", "1.5", "--out", "x.yaml"],
                                  ["sweep", "fmnist-resnet", "--points", "0", "--out", "x.csv"],
                                  ["sweep", "fmnist-resnet", "--proxy", "hessian", "--out", "x.csv"],
                                  ["sweep", "fmnist-resnet", "--ci", "2", "--samples", "100", "--out", "x.csv"],
                                  ["sweep", "fmnist-resnet", "--ci", "0", "--out", "x.csv"]])
def test_bad_flags_exit_2(args):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2


@pytest.mark.slow  # `rankscope bench sweep`
def test_bench_sweep_agrees_and_reports_the_speedup(capsys):
    assert main(["bench", "sweep", "--samples", "16", "--points", "2", "--layers", "fc", "--threads", "1"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("sweep speedup: ")


def test_hybrid_sweep_and_allocation_from_a_proxy(tmp_path, capsys):
    common = ["--layers", "fc", "layer3.0.downsample.0", "layer3.0.conv2", "--points", "4", "--samples", "32",
              "--threads", "1", "--cache-dir", str(tmp_path / "cache")]
    assert main(["sweep", "fmnist-resnet", "--proxy", "fisher", "--hybrid", "0.5", *common,
                 "--out", str(tmp_path / "h.csv")]) == 0
    out = capsys.readouterr().out
    found = re.search(r"\(12 points; (\d+) scored exactly where the fisher proxy's plan at 0.5 of the FLOPs is decided", out)
    assert found and 3 <= int(found.group(1)) < 12, out
    table = read_table(tmp_path / "h.csv")
    assert (table["method"] != "dense").sum() == 12
    assert main(["allocate", "fmnist-resnet", "--target-flops", "0.9", "--proxy", "fisher", "--hybrid", *common,
                 "--out", str(tmp_path / "p.yaml")]) == 0
    assert "meets the target 0.9" in capsys.readouterr().out


def test_allocate_by_default_runs_the_post_training_steps_and_saves_the_model(tmp_path, capsys):
    """``rankscope allocate MODEL --target-flops F --out plan.yaml`` as a user types it: the whitened allocator on the
    training split, every post-training step recorded in the plan, and the compressed model saved and reloaded."""
    out, saved = tmp_path / "plan.yaml", tmp_path / "small"
    assert main(["allocate", "fmnist-resnet", "--target-flops", "0.8", "--calibration", "64", "--reconstruct", "3",
                 "--threads", "1", "--out", str(out), "--save", str(saved)]) == 0
    printed = capsys.readouterr()
    assert "meets the target 0.8" in printed.out and f"wrote {saved}" in printed.out
    assert "sequential:" in printed.err and "reconstruct" in printed.err
    plan = load_plan(out)
    assert plan.layers and {e.method for e in plan.layers.values()} == {"aa_svd"}
    assert plan.posttrain is not None and plan.posttrain.sequential and plan.posttrain.reconstruct == 3
    small, _ = create_model(f"file:{saved}")
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    dense = create_model("fmnist-resnet")[0]
    assert not torch.allclose(small(x), dense(x))  # compressed, and reloaded from its own weights
    torch.testing.assert_close(create_model(f"file:{saved}")[0](x), small(x))


@pytest.mark.parametrize(("extra", "message"), [
    (["--allocator", "greedy", "--posttrain"], "--save and --posttrain go with the whitened allocator"),
    (["--allocator", "energy", "--save", "SAVED"], "--save and --posttrain go with the whitened allocator"),
])
def test_allocate_post_training_flags_checked_before_work(extra, message, tmp_path, capsys):
    extra = [str(tmp_path / "s") if e == "SAVED" else e for e in extra]
    assert main(["allocate", "fmnist-resnet", "--target-flops", "0.5", "--out", str(tmp_path / "p.yaml"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "p.yaml").exists()


def test_allocate_save_into_a_full_folder_is_refused_before_work(tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("kept")
    assert main(["allocate", "fmnist-resnet", "--target-flops", "0.5", "--out", str(tmp_path / "p.yaml"),
                 "--save", str(tmp_path / "full")]) == 2
    assert (tmp_path / "full" / "x").read_text() == "kept" and not (tmp_path / "p.yaml").exists()
    assert len(capsys.readouterr().err.strip().splitlines()) == 1

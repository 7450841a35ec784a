"""``rankscope bench attention``: the attention variants against softmax (SDPA), in cost and in accuracy.

Two measurements, each a function returning a DataFrame (the dashboard reuses them):

- :func:`length_sweep`: one attention layer (width ``dim``, ``heads`` heads, weights of one seeded timm
  ``Attention``) at each sequence length, every variant swapped in from it: median latency
  (:func:`core.profile.measure_latency`), peak memory (:func:`core.profile.measure_memory`, method
  ``torch-profiler`` by default: the in-process peak of live tensors plus weights and input; a
  child process per point would cost minutes) and FLOPs (:func:`core.profile.count_flops`), with
  each one's ratio to softmax at the same length, measured in the same process.
- :func:`accuracy_table`: fmnist-vit with the variant in every block, top-1 on a fixed test subset
  zero-shot and after the same short fine-tune for every variant (:func:`core.recovery.distill`
  from the softmax model, which is the unchanged shipped model).
- :func:`perplexity_table` (``--parts lm``): smollm2-135m with each causal variant
  (:func:`core.attention.causal_variants`) in a few layers (the last four by default), perplexity on a few
  windows of the evaluation plays zero-shot and after a short distillation from the unchanged model on windows
  of the calibration works (``shakespeare`` ``train`` vs ``test``, windows shortened to ``--lm-window`` tokens).

With the ViT part (the default), the last line printed is ``attention: nmf memory ratio at <N> = <x>, accuracy gap
= <y> points``; with the LM part alone, ``attention lm: ...`` (:func:`lm_summary_line`).
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

import pandas as pd
import torch
from timm.layers import Attention

from core import argtypes
from core.attention import causal_variants, list_variants, swap_attention, swap_model
from core.data import eval_subset, load_dataset
from core.models import create_model
from core.profile import count_flops, count_params, evaluate, measure_latency, measure_memory
from core.profile.context import torch_threads
from core.recovery import RecoveryConfig, distill

LENGTHS = (256, 512, 1024, 2048, 4096, 8192, 16384)
BASELINE = "softmax"
# Fine-tune settings shared by every variant, picked within the 10-minute budget of the whole bench: at lr 1e-3 the
# fine-tune leaves the softmax model where it was (at 5e-3 it cost it 2 points); 400 steps gave nmf 88.9 %, 250 gave 87.9 %.
FINETUNE = {"steps": 400, "batch_size": 32, "lr": 1e-3}
# Variant options the bench uses (others at their defaults). The factorizations read the class token out by
# single-query softmax attention (``readout=1``, see core.attention._ham): without it, fmnist-vit's class token
# has almost no path to the image and nmf fine-tuned to at best 68 % (rank 1, 250 steps, lr 5e-3; rank 8: 62 %).
BENCH_HYPER: dict[str, dict[str, Any]] = {"nmf": {"readout": 1}, "pnmf": {"readout": 1}, "ntf": {"readout": 1}}
# The LM part: smollm2-135m (C = 576, full rank 576) with the variant in its last four layers. distill fine-tunes every
# weight, so the learning rate is a small one for a pretrained LM; windows are short so that a step takes seconds.
LM_MODEL = "smollm2-135m"
LM_LAYERS = (-4, -3, -2, -1)
LM_SETTINGS = {"window": 128, "train_windows": 4, "test_windows": 4, "steps": 8, "batch_size": 2, "lr": 1e-4}
LM_HYPER: dict[str, dict[str, Any]] = {"lowrank-qkv": {"rank": 144}}  # a quarter of full rank


def length_sweep(variants: list[str], lengths: list[int] | tuple[int, ...] = LENGTHS, *, dim: int = 64, heads: int = 4,
                 batch: int = 1, threads: int | None = None, repeats: int = 3, memory_method: str = "torch-profiler",
                 hyper: dict[str, dict[str, Any]] | None = None, seed: int = 0, device: str = "cpu") -> pd.DataFrame:
    """Latency, peak memory and FLOPs of one attention layer per variant and sequence length.

    Parameters
    ----------
    variants : names from :func:`core.attention.list_variants`; softmax is added when missing (the ratios need it).
    lengths : sequence lengths N.
    dim, heads, batch : layer width, heads and the batch of the input ``(batch, N, dim)``.
    threads : CPU threads for the measurements (``None``: torch's current count).
    repeats : timed calls per point (one untimed warm-up call first).
    memory_method : passed to :func:`core.profile.measure_memory`.
    hyper : per-variant options, e.g. ``{"nmf": {"rank": 8}}``.
    seed : seed of the layer's weights and of the input.
    device : ``"cpu"`` or ``"cuda[:N]"`` (CUDA events and the allocator's peak there; FLOPs are counted on the CPU).

    Returns
    -------
    pd.DataFrame
        One row per (variant, seq_len): ``latency_ms`` (median), ``memory_mb`` (weights + input + forward
        peak), ``activation_mb`` (forward peak alone), ``gflops``, ``memory_method``, ``backend`` (SDPA
        kernel, softmax only), and ``latency_ratio``, ``memory_ratio``, ``flops_ratio`` to softmax.
    """
    hyper = hyper or {}
    names = [BASELINE] + [v for v in variants if v != BASELINE]
    torch.manual_seed(seed)
    source = Attention(dim, heads, qkv_bias=True).eval()
    rows = []
    for n in lengths:
        x = torch.randn(batch, n, dim, generator=torch.Generator().manual_seed(seed))
        for name in names:
            module = swap_attention(source, name, seq_len=n, **hyper.get(name, {})).eval()
            gflops = count_flops(module, x).total / 1e9
            latency = measure_latency(module, x, warmup=1, repeats=repeats, threads=threads, device=device)
            memory = measure_memory(module, x, threads=threads, method=memory_method, device=device)
            rows.append({
                "variant": name, "seq_len": n, "latency_ms": latency.median_ms, "memory_mb": memory.peak_mb,
                "activation_mb": memory.peak_activation_mb, "gflops": gflops,
                "memory_method": memory.method, "backend": getattr(module, "last_backend", None) or "",
            })
    table = pd.DataFrame(rows)
    base = table[table["variant"] == BASELINE].set_index("seq_len")
    for column, ratio in (("latency_ms", "latency_ratio"), ("memory_mb", "memory_ratio"), ("gflops", "flops_ratio")):
        table[ratio] = table[column] / table["seq_len"].map(base[column])
    return table


def accuracy_table(variants: list[str], *, model_name: str = "fmnist-vit", samples: int | None = 2000, steps: int = FINETUNE["steps"],
                   batch_size: int = FINETUNE["batch_size"], lr: float = FINETUNE["lr"], threads: int | None = None,
                   hyper: dict[str, dict[str, Any]] | None = None) -> tuple[pd.DataFrame, float]:
    """Top-1 of ``model_name`` with each variant in every attention block, zero-shot and fine-tuned.

    Every variant gets the same fine-tune: ``steps`` steps of :func:`core.recovery.distill` (batch
    ``batch_size``, peak learning rate ``lr``, the rest :class:`~core.recovery.RecoveryConfig`'s defaults)
    on the training split, distilled from the unchanged model. Accuracy is measured on a fixed subset
    of ``samples`` test images (all when ``None``).

    Returns
    -------
    (pd.DataFrame, float)
        Rows ``variant``, ``params``, ``zero_shot``, ``fine_tuned`` (top-1 in %), ``gap_points``
        (the model's top-1 minus ``fine_tuned``), ``finetune_s``; and the model's own top-1 in %.
    """
    hyper = hyper or {}
    model, cfg = create_model(model_name)
    test = eval_subset(load_dataset(cfg.dataset, cfg), samples)
    train = load_dataset(cfg.dataset, cfg, split="train")
    config = RecoveryConfig(steps=steps, batch_size=batch_size, lr=lr)
    rows = []
    with torch_threads(threads):
        reference = 100 * evaluate(model, test)["top1"]
        for name in variants:
            student = swap_model(model, name, **hyper.get(name, {}))
            zero_shot = 100 * evaluate(student, test)["top1"]
            start = time.perf_counter()
            tuned = distill(student, model, train, config)
            seconds = time.perf_counter() - start
            fine_tuned = 100 * evaluate(tuned, test)["top1"]
            rows.append({"variant": name, "params": count_params(tuned), "zero_shot": zero_shot, "fine_tuned": fine_tuned,
                         "gap_points": reference - fine_tuned, "finetune_s": seconds})
    return pd.DataFrame(rows), reference


def perplexity_table(variants: list[str] | None = None, *, model_name: str = LM_MODEL,
                     layers: tuple[int, ...] | list[int] = LM_LAYERS, window: int = LM_SETTINGS["window"],
                     train_windows: int = LM_SETTINGS["train_windows"], test_windows: int = LM_SETTINGS["test_windows"],
                     steps: int = LM_SETTINGS["steps"], batch_size: int = LM_SETTINGS["batch_size"],
                     lr: float = LM_SETTINGS["lr"], threads: int | None = None,
                     hyper: dict[str, dict[str, Any]] | None = None) -> tuple[pd.DataFrame, float]:
    """Perplexity of the causal LM ``model_name`` with each causal variant in ``layers``, zero-shot and distilled.

    Parameters
    ----------
    variants : names from :func:`core.attention.causal_variants` (default: all of them).
    model_name : a causal LM of the registry.
    layers : attention layers swapped, as :func:`core.attention.chosen_layers` reads them.
    window : tokens per window (the model's own context is cut to it, so a window costs little).
    train_windows, test_windows : windows of the ``train`` split distilled on, of the ``test`` split scored.
    steps, batch_size, lr : :func:`core.recovery.distill`'s settings, the same for every variant (the rest
        :class:`~core.recovery.RecoveryConfig`'s defaults).
    threads : CPU threads (``None``: torch's current count).
    hyper : per-variant options (default :data:`LM_HYPER`).

    Returns
    -------
    (pd.DataFrame, float)
        Rows ``variant``, ``params`` (of the model), ``zero_shot``, ``fine_tuned`` (perplexities), ``ratio``
        (``fine_tuned`` over the model's), ``finetune_s``; and the model's own perplexity.
    """
    variants = variants or causal_variants()
    hyper = LM_HYPER if hyper is None else hyper
    model, cfg = create_model(model_name)
    cfg = dataclasses.replace(cfg, input_size=(window,))
    test = load_dataset(f"shakespeare:{test_windows}", cfg)
    train = load_dataset(f"shakespeare:{train_windows}", cfg, split="train")
    config = RecoveryConfig(steps=steps, batch_size=batch_size, lr=lr)
    rows = []
    with torch_threads(threads):
        reference = evaluate(model, test)["perplexity"]
        for name in variants:
            student = swap_model(model, name, layers=list(layers), **hyper.get(name, {}))
            zero_shot = evaluate(student, test)["perplexity"]
            start = time.perf_counter()
            tuned = distill(student, model, train, config)
            seconds = time.perf_counter() - start
            fine_tuned = evaluate(tuned, test)["perplexity"]
            rows.append({"variant": name, "params": count_params(tuned), "zero_shot": zero_shot, "fine_tuned": fine_tuned,
                         "ratio": fine_tuned / reference, "finetune_s": seconds})
    return pd.DataFrame(rows), reference


def lm_summary_line(table: pd.DataFrame, reference: float, layers: int) -> str:
    """``attention lm: perplexity <model's>; in <n> layers performer <zero-shot> -> <fine-tuned>, ...``."""
    cells = ", ".join(f"{r.variant} {r.zero_shot:.2f} -> {r.fine_tuned:.2f}" for r in table.itertuples())
    return f"attention lm: perplexity {reference:.2f}; in {layers} layers, zero-shot -> fine-tuned: {cells}"


def summary_line(sweep: pd.DataFrame, accuracy: pd.DataFrame, variant: str = "nmf") -> str:
    """``attention: nmf memory ratio at <longest N> = <x>, accuracy gap = <y> points``."""
    longest = int(sweep["seq_len"].max())
    ratio = sweep.loc[(sweep["variant"] == variant) & (sweep["seq_len"] == longest), "memory_ratio"].item()
    gap = accuracy.loc[accuracy["variant"] == variant, "gap_points"].item()
    return f"attention: {variant} memory ratio at {longest} = {ratio:.3f}, accuracy gap = {gap:.2f} points"


def target_lines(sweep: pd.DataFrame, accuracy: pd.DataFrame) -> list[str]:
    """The issue's targets, each with its verdict read from the tables (met or MISSED, never assumed)."""
    lines = []
    for name in ("nmf", "pnmf"):
        rows = sweep[sweep["variant"] == name]
        if rows.empty:
            continue
        long = rows[rows["seq_len"] >= 4096]
        if not long.empty:
            worst = long.loc[long["memory_ratio"].idxmax()]
            met = bool((long["memory_ratio"] < 1).all())
            lines.append(f"target {name} memory < softmax at every N >= 4096: {'met' if met else 'MISSED'} "
                         f"(worst ratio {worst['memory_ratio']:.3f} at {int(worst['seq_len'])})")
        longest = rows.loc[rows["seq_len"].idxmax()]
        lines.append(f"target {name} faster than softmax at {int(longest['seq_len'])}: "
                     f"{'met' if longest['latency_ratio'] < 1 else 'MISSED'} (latency ratio {longest['latency_ratio']:.3f})")
    nmf = accuracy[accuracy["variant"] == "nmf"]
    if not nmf.empty:
        gap = nmf["gap_points"].item()
        lines.append(f"target nmf within 1.5 points after fine-tune: {'met' if gap <= 1.5 else 'MISSED'} (gap {gap:.2f})")
    return lines


def run_lm(args: argparse.Namespace) -> str:
    """The LM part: print its table and return its summary line."""
    causal = set(causal_variants())
    variants = [v for v in args.variants if v in causal] if args.variants else None
    table, reference = perplexity_table(variants, layers=args.lm_layers, window=args.lm_window,
                                        train_windows=args.lm_windows, test_windows=args.lm_windows, steps=args.lm_steps,
                                        lr=args.lm_lr, threads=args.finetune_threads)
    print(f"\n{LM_MODEL} perplexity on {args.lm_windows} test windows of {args.lm_window} tokens, model {reference:.2f}; "
          f"causal variants in layers {list(args.lm_layers)} (options: {LM_HYPER}, others default); distilled "
          f"{args.lm_steps} steps on {args.lm_windows} train windows, batch {LM_SETTINGS['batch_size']}, lr {args.lm_lr:g}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    return lm_summary_line(table, reference, len(args.lm_layers))


def run(args: argparse.Namespace) -> None:
    if "vit" not in args.parts:
        print(run_lm(args))
        return
    variants = args.variants or list_variants()
    start = time.perf_counter()
    sweep = length_sweep(variants, args.lengths, dim=args.dim, heads=args.heads, batch=args.batch, threads=args.threads,
                         repeats=args.repeats, memory_method=args.memory, hyper=BENCH_HYPER)
    with pd.option_context("display.width", 200, "display.max_rows", None, "display.max_columns", None):
        print(f"one attention layer, C = {args.dim}, {args.heads} heads, batch {args.batch}; memory by "
              f"{sweep['memory_method'].iloc[0]}; softmax kernel: {', '.join(sorted(set(sweep['backend']) - {''}))}")
        for column in ("latency_ms", "latency_ratio", "memory_mb", "memory_ratio", "gflops", "flops_ratio"):
            print(f"\n{column} (variant x sequence length)")
            print(sweep.pivot(index="variant", columns="seq_len", values=column).loc[sweep["variant"].unique()]
                  .to_string(float_format=lambda v: f"{v:.3g}"))
        print(f"[length sweep: {time.perf_counter() - start:.0f} s]")
        if torch.cuda.is_available():  # the same sweep on the GPU, when there is one
            gpu = length_sweep(variants, args.lengths, dim=args.dim, heads=args.heads, batch=args.batch, repeats=args.repeats,
                               hyper=BENCH_HYPER, device="cuda")
            for column in ("latency_ratio", "memory_ratio"):
                print(f"\nCUDA {column} (variant x sequence length; {torch.cuda.get_device_name()})")
                print(gpu.pivot(index="variant", columns="seq_len", values=column).loc[gpu["variant"].unique()]
                      .to_string(float_format=lambda v: f"{v:.3g}"))
        accuracy, reference = accuracy_table(variants, samples=args.samples, steps=args.steps, batch_size=args.finetune_batch,
                                             lr=args.lr, threads=args.finetune_threads, hyper=BENCH_HYPER)
        print(f"\nfmnist-vit top-1 (%) on {args.samples} test images (options: {BENCH_HYPER}, others default), model {reference:.2f}; fine-tune: "
              f"{args.steps} steps, batch {args.finetune_batch}, lr {args.lr:g}, {args.finetune_threads} thread(s), distilled from the model, "
              "the same for every variant")
        print(accuracy.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    lm_line = run_lm(args) if "lm" in args.parts else None
    for line in target_lines(sweep, accuracy):
        print(line)
    if lm_line is not None:
        print(lm_line)
    print(summary_line(sweep, accuracy))


def add_parser(kinds: argparse._SubParsersAction) -> None:
    """Register ``bench attention``."""
    p = kinds.add_parser("attention", help="attention variants vs softmax: latency, memory, FLOPs by length; fmnist-vit accuracy; "
                                              "smollm2-135m perplexity (--parts lm)")
    p.add_argument("--variants", nargs="+", help="variants to compare (default: all; softmax is always measured)")
    p.add_argument("--lengths", nargs="+", type=argtypes.positive("--lengths"), default=list(LENGTHS), help="sequence lengths")
    p.add_argument("--dim", type=argtypes.positive("--dim"), default=64, help="layer width C (default 64, as fmnist-vit)")
    p.add_argument("--heads", type=argtypes.positive("--heads"), default=4, help="attention heads (default 4)")
    p.add_argument("--batch", type=argtypes.positive("--batch"), default=1, help="sequences per input (default 1)")
    p.add_argument("--repeats", type=argtypes.positive("--repeats"), default=3, help="timed calls per point")
    p.add_argument("--memory", choices=["torch-profiler", "child-rss", "auto"], default="torch-profiler",
                   help="memory method (child-rss: a process per point, minutes longer)")
    p.add_argument("--samples", type=argtypes.positive("--samples"), default=2000, help="fmnist-vit test images scored")
    p.add_argument("--steps", type=int, default=FINETUNE["steps"], help="fine-tune steps per variant (0: zero-shot only)")
    p.add_argument("--finetune-batch", type=argtypes.positive("--finetune-batch"), default=FINETUNE["batch_size"], help="fine-tune batch")
    p.add_argument("--lr", type=float, default=FINETUNE["lr"], help="fine-tune peak learning rate")
    p.add_argument("--threads", type=argtypes.threads, default=None, help="CPU threads of the length sweep (default: torch's)")
    # fmnist-vit's small matmuls train faster on one thread of a busy 2-core machine than on two
    # (0.22 s against 0.93 s a step of batch 128, measured), and the bench must fit in 10 minutes.
    p.add_argument("--finetune-threads", type=argtypes.threads, default=1, help="CPU threads of the fine-tunes and evaluations (default 1)")
    p.add_argument("--parts", nargs="+", choices=["vit", "lm"], default=["vit"],
                   help="vit: the length sweep and fmnist-vit accuracy (default); lm: smollm2-135m perplexity with the "
                        "causal variants (minutes)")
    p.add_argument("--lm-layers", nargs="+", type=int, default=list(LM_LAYERS),
                   help="smollm2-135m attention layers swapped (indices, negative from the end; default the last four)")
    p.add_argument("--lm-window", type=argtypes.positive("--lm-window"), default=LM_SETTINGS["window"],
                   help="tokens per shakespeare window of the LM part")
    p.add_argument("--lm-windows", type=argtypes.positive("--lm-windows"), default=LM_SETTINGS["test_windows"],
                   help="windows distilled on (train split) and scored (test split)")
    p.add_argument("--lm-steps", type=int, default=LM_SETTINGS["steps"], help="distillation steps per variant (0: zero-shot only)")
    p.add_argument("--lm-lr", type=float, default=LM_SETTINGS["lr"], help="distillation peak learning rate")
    p.set_defaults(func=run)

"""``rankscope bench resample``: continuous resampling of channel groups against structured pruning at the same densities.

For each model (fmnist-resnet and fmnist-vit by default) and each density d (0.9, 0.7, 0.5, 0.3), every channel
group the pruner can take is narrowed to d by one plan (``groups:`` every group at d, applied with
:func:`core.plan.apply_plan`), once per way:

- ``resample``: :mod:`core.resample` (channels ordered smoothly, cubic interpolation, quadrature scaling);
- ``l1``, ``taylor``, ``hessian``, ``lamp``: :mod:`core.prune` through Torch-Pruning, on the same groups.

Each narrowed model is measured: parameters, FLOPs, median latency (A/B against the dense model in this
process), top-1 on a seeded test subset without fine-tune, then after the same short recovery for every
way (:func:`core.recovery.recalibrate_batchnorm` and :func:`core.recovery.distill` from the dense model,
``--steps`` steps). With ``--integral`` the integrally trained ``fmnist-resnet-integral`` is resampled
beside the plain model (resampling only), to see whether integral training makes resampling lose less.

The last line printed is ``resample: beats L1 pruning at <k>/<n> densities (no fine-tune)``, counted over
the plain models; where it does not win, the table shows it.
"""
from __future__ import annotations

import argparse
import time
from typing import Any

import pandas as pd
import torch

from core import argtypes
from core.data import eval_subset, labelled_batch, load_dataset
from core.models import create_model
from core.plan import LayerEntry, Plan, apply_plan
from core.profile import ab_latency, count_flops, count_params, evaluate, example_input
from core.profile.context import torch_threads
from core.prune import prunable_groups
from core.recovery import RecoveryConfig, distill, recalibrate_batchnorm

DENSITIES = (0.9, 0.7, 0.5, 0.3)
WAYS = ("resample", "l1", "taylor", "hessian", "lamp")
INTEGRAL = "fmnist-resnet-integral"


def narrowing_plan(model_name: str, groups: list[str], way: str, density: float) -> Any:
    """A plan narrowing each of ``groups`` to ``density`` by ``way`` (``resample`` or a pruning score).

    The integral model keeps the channel order it was trained in (``order: false``); the others are ordered first.
    """
    if way == "resample":
        entry = LayerEntry("resample", density=density, options={"order": False} if model_name == INTEGRAL else {})
    else:
        entry = LayerEntry("prune", density=density, options={"score": way})
    return Plan(model_name, groups={g: entry for g in groups})


def compare(name: str, *, densities: tuple[float, ...] = DENSITIES, ways: tuple[str, ...] = WAYS, samples: int = 1000,
            steps: int = 60, latency_batch: int = 32, repeats: int = 15, seed: int = 0,
            log: Any = None) -> pd.DataFrame:
    """One row per (way, density) of model ``name`` (and one for the dense model): cost, latency, accuracy before and
    after the short recovery.

    Parameters
    ----------
    name : a registered model with trained weights.
    densities, ways : what to measure (ways: ``resample`` and pruning scores).
    samples : seeded test images scored.
    steps : distillation steps of the recovery (0: BatchNorm re-calibration only).
    latency_batch, repeats : batch of the latency runs and timed calls per model (A/B with the dense model).
    log : called with a line of progress, or ``None``.

    Returns
    -------
    pandas.DataFrame
        ``model, way, density, params, flops, latency_ms, speedup`` (dense latency / this one, measured
        alternately), ``top1`` (no fine-tune), ``top1_tuned``, ``apply_s``, ``tune_s``.
    """
    model, cfg = create_model(name)
    example = example_input(cfg, 1)
    groups = list(prunable_groups(model, example))
    train = load_dataset(cfg.dataset, cfg, split="train")
    test = eval_subset(load_dataset(cfg.dataset, cfg), samples, seed)
    calibration, labels = labelled_batch(cfg.dataset, cfg, 128, seed)
    config = RecoveryConfig(steps=steps, batch_size=64, seed=seed, bn_batches=20)
    timed = example_input(cfg, latency_batch)
    dense = evaluate(model, test)
    rows = [{"model": name, "way": "dense", "density": 1.0, "params": count_params(model),
             "flops": count_flops(model, example).per_sample, "latency_ms": ab_latency(model, model, timed, repeats)[0],
             "speedup": 1.0, "top1": dense["top1"], "top1_tuned": dense["top1"], "apply_s": 0.0, "tune_s": 0.0}]
    for way in ways:
        for density in densities:
            start = time.perf_counter()
            narrowed, _ = apply_plan(model, narrowing_plan(name, groups, way, density), calibration=calibration,
                                     labels=labels, example=example)
            applied = time.perf_counter() - start
            base_ms, ms = ab_latency(model, narrowed, timed, repeats)
            start = time.perf_counter()
            tuned = recalibrate_batchnorm(narrowed, train, batches=config.bn_batches, batch_size=config.batch_size, seed=seed)
            tuned = distill(tuned, model, train, config) if steps else tuned
            tune_s = time.perf_counter() - start
            rows.append({"model": name, "way": way, "density": density, "params": count_params(narrowed),
                         "flops": count_flops(narrowed, example).per_sample, "latency_ms": ms, "speedup": base_ms / ms,
                         "top1": evaluate(narrowed, test)["top1"], "top1_tuned": evaluate(tuned, test)["top1"],
                         "apply_s": applied, "tune_s": tune_s})
            if log is not None:
                r = rows[-1]
                log(f"{name} {way:8s} d={density:.1f}: top-1 {100 * r['top1']:.2f} % → {100 * r['top1_tuned']:.2f} % "
                    f"after {steps} steps; FLOPs {r['flops'] / rows[0]['flops']:.2f}; speed-up {r['speedup']:.2f}×")
    return pd.DataFrame(rows)


def wins_over_l1(table: pd.DataFrame, column: str = "top1") -> tuple[int, int]:
    """(densities where resampling's ``column`` is strictly above L1 pruning's, densities compared), over models."""
    both = table[table["way"].isin(["resample", "l1"])].pivot_table(index=["model", "density"], columns="way", values=column)
    both = both.dropna()
    return int((both["resample"] > both["l1"]).sum()), len(both)


def run(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    tables = []
    with torch_threads(args.threads):
        for name in args.models:
            tables.append(compare(name, densities=tuple(args.densities), ways=tuple(args.ways), samples=args.samples,
                                  steps=args.steps, latency_batch=args.latency_batch, seed=args.seed, log=print))
        if args.integral:
            tables.append(compare(INTEGRAL, densities=tuple(args.densities), ways=("resample",), samples=args.samples,
                                  steps=args.steps, latency_batch=args.latency_batch, seed=args.seed, log=print))
    table = pd.concat(tables, ignore_index=True)
    shown = table.assign(**{c: (100 * table[c]).round(2) for c in ("top1", "top1_tuned")},
                         flops=(table["flops"] / 1e6).round(2), latency_ms=table["latency_ms"].round(3),
                         speedup=table["speedup"].round(2), apply_s=table["apply_s"].round(1), tune_s=table["tune_s"].round(1))
    with pd.option_context("display.max_rows", None, "display.width", 200):
        print(shown.rename(columns={"flops": "MFLOPs", "top1": "top1 %", "top1_tuned": "tuned %"}).to_string(index=False))
    plain = table[table["model"] != INTEGRAL]
    tuned_wins, tuned_n = wins_over_l1(plain, "top1_tuned")
    print(f"after {args.steps} recovery steps: resample beats L1 pruning at {tuned_wins}/{tuned_n} densities")
    if args.integral:
        pair = table[(table["way"] == "resample") & table["model"].isin(["fmnist-resnet", INTEGRAL])]
        print("resampled, no fine-tune, plain vs integral fmnist-resnet: " + ", ".join(
            f"d={d:.1f} {100 * r.set_index('model').loc['fmnist-resnet', 'top1']:.2f} vs {100 * r.set_index('model').loc[INTEGRAL, 'top1']:.2f} %"
            for d, r in pair.groupby("density", sort=False) if set(r["model"]) == {"fmnist-resnet", INTEGRAL}))
    print(f"bench resample took {time.perf_counter() - start:.0f} s on {args.threads or torch.get_num_threads()} thread(s)")
    wins, n = wins_over_l1(plain)
    print(f"resample: beats L1 pruning at {wins}/{n} densities (no fine-tune)")


def add_parser(kinds: argparse._SubParsersAction) -> None:
    """Register ``bench resample``."""
    p = kinds.add_parser("resample", help="resampling channel groups against L1/Taylor/Hessian/LAMP pruning at equal densities")
    p.add_argument("--models", nargs="+", default=["fmnist-resnet", "fmnist-vit"])
    p.add_argument("--densities", nargs="+", type=argtypes.fraction("--densities"), default=list(DENSITIES))
    p.add_argument("--ways", nargs="+", choices=WAYS, default=list(WAYS))
    p.add_argument("--samples", type=argtypes.positive("--samples"), default=1000, help="seeded test images scored")
    p.add_argument("--steps", type=int, default=60, help="distillation steps of the recovery after narrowing (0: BN only)")
    p.add_argument("--latency-batch", type=argtypes.positive("--latency-batch"), default=32)
    p.add_argument("--no-integral", dest="integral", action="store_false",
                   help=f"leave out the resampled {INTEGRAL} beside the plain fmnist-resnet")
    p.add_argument("--threads", type=argtypes.threads, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)

"""``rankscope bench allocate``: the allocators at 25/50/75 % of the FLOPs, without and with recovery, and their realised speed.

For each model (fmnist-resnet and fmnist-vit by default):

1. **sweep**: every compressible layer, each with its mixed methods (:data:`core.sweep.engine.MIX`), at
   ``--points`` ranks, scored on a seeded subset of the *training* split (``--sweep-samples``); read from
   and added to the sweep disk cache.
2. **accuracy without fine-tuning**: each allocator's plan at each FLOPs budget, scored on the test split
   (``--samples`` images, all 10,000 by default). ``greedy`` (AIMET's), ``uniform``, ``energy`` and ``vbmf``
   use each layer's default method, one per layer; ``rankscope`` chooses among the mixed methods and
   refines on the measured loss of the first ``--refine-samples`` images of the sweep's training subset
   (:mod:`core.sweep.refine`): no test image is used to choose.
3. **recovery**: the best allocator's plan at each ``--recover`` budget, :func:`core.recovery.recover` with
   ``--steps`` fine-tune steps on the training split; test accuracy after.
4. **realised speed** of the plans at the budget closest to 50 %: measured CPU latency of the compressed
   model against the dense one (``--repeats`` interleaved A/B calls each, medians, in this process), as
   ``speedup / FLOP reduction`` (1: the FLOPs saved are all realised). ``rankscope-latency`` is the rankscope
   allocator with a *latency* target: the latency the FLOPs-targeting rankscope plan is predicted to
   reach (its layers timed on a batch of ``--latency-batch`` with ``--threads`` threads,
   :class:`core.speed.LayerTimes`, cached per machine; summed as :mod:`core.sweep.budget` does). At the same predicted latency it
   picks options by their measured time instead of their FLOPs, so its ratio shows what that buys.

The last line printed is ``allocate: rankscope beats greedy at <k>/<n> budgets`` (a strictly higher test
top-1 without fine-tuning, over every model and budget).
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core import argtypes
from core.data import eval_subset, load_dataset
from core.errors import RankscopeError
from core.models import create_model
from core.plan import apply_plan
from core.profile import ab_latency, count_flops, evaluate, example_input
from core.profile.context import torch_threads
from core.recovery import RecoveryConfig, recover
from core.speed import LayerTimes
from core.sweep import SweepCache, data_key, layer_methods, sweep
from core.sweep.allocate import allocate
from core.sweep.budget import Problem, Target
from core.sweep.cache import DEFAULT_FOLDER

BUDGETS = (0.25, 0.5, 0.75)
ORDER = ("rankscope", "greedy", "uniform", "energy", "vbmf")  # table columns; greedy is the baseline to beat
LATENCY = "rankscope-latency"


@dataclass
class ModelBench:
    """What :func:`bench_model` measured for one model.

    Attributes
    ----------
    dense : test top-1 of the dense model.
    top1 : ``(allocator, budget) -> test top-1`` without fine-tuning.
    flops : ``(allocator, budget) -> FLOPs kept`` (fraction of the dense model's).
    recovered : ``budget -> (allocator, top-1 after recovery)``.
    speed : ``allocator -> (FLOPs kept, measured speedup, test top-1)`` at the budget closest to 50 %.
    """

    name: str
    samples: int
    dense: float
    top1: dict[tuple[str, float], float] = field(default_factory=dict)
    flops: dict[tuple[str, float], float] = field(default_factory=dict)
    recovered: dict[float, tuple[str, float]] = field(default_factory=dict)
    speed: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    seconds: float = 0.0

    def wins(self) -> list[bool]:
        """Per budget: whether rankscope's top-1 is strictly above greedy's."""
        budgets = sorted({b for _, b in self.top1})
        return [self.top1[("rankscope", b)] > self.top1[("greedy", b)] for b in budgets]


@dataclass
class _Setup:
    """One model's data and sweep table, and how each allocator is run on them."""

    name: str
    model: nn.Module
    cfg: Any
    train: Any  # the training split: the sweep's subset, the refinement's and the recovery's data
    test: Any  # the test images scored
    table: Any
    refine_data: Any  # None: rankscope is not refined
    evaluations: int

    def plan(self, allocator: str, target: Any, times: LayerTimes | None = None) -> Any:
        """``allocator``'s :class:`~core.sweep.budget.Allocation`: rankscope on the mixed methods, refined; the
        others on each layer's default method. ``times`` prices a latency target."""
        mixed = allocator == "rankscope"
        problem = Problem(self.model, self.name, example_input(self.cfg, 1), target, self.table,
                          None if mixed else layer_methods(self.model), self.refine_data if mixed else None, self.evaluations,
                          times)
        return allocate(allocator, problem)

    def compressed(self, allocation: Any) -> nn.Module:
        """The model with ``allocation``'s plan applied."""
        return apply_plan(self.model, allocation.plan)[0]


def _setup(name: str, samples: int | None, sweep_samples: int, refine_samples: int, evaluations: int, points: int,
           seed: int, cache_dir: str) -> _Setup:
    """Step 1 of the module docstring: load ``name`` and its data, sweep (through the disk cache)."""
    model, cfg = create_model(name)
    train = load_dataset(cfg.dataset, cfg, split="train")
    chosen_on = eval_subset(train, sweep_samples, seed)
    cache = SweepCache(data_key(f"{cfg.dataset}:train", sweep_samples, seed), Path(cache_dir))
    table = sweep(model, chosen_on, points=points, mix=True, cache=cache)
    refine_data = eval_subset(chosen_on, refine_samples) if evaluations else None  # nested: the first refine_samples
    return _Setup(name, model, cfg, train, eval_subset(load_dataset(cfg.dataset, cfg), samples, seed), table,
                  refine_data, evaluations)


def _speed(setup: _Setup, kept: dict[str, Any], top1: dict[str, float], latency_batch: int,
           repeats: int, cache_dir: str) -> dict[str, tuple[float, float, float]]:
    """Step 4: per allocator of ``kept`` and rankscope-latency (planned here), FLOPs kept, measured speedup, test top-1.

    ``top1`` holds the test top-1 of ``kept``'s plans; rankscope-latency's is measured here.
    """
    example = torch.stack([setup.test[i % len(setup.test)][0] for i in range(latency_batch)])  # (B, C, H, W)
    times = LayerTimes(setup.model, example, folder=Path(cache_dir).parent / "latency")
    costs = Problem(setup.model, setup.name, example_input(setup.cfg, 1), Target("latency", 1.0), setup.table,
                    times=times).costs
    reached = costs.total({layer: (e.method, e.rank)
                           for layer, e in kept["rankscope"].plan.layers.items()}) / costs.base
    kept = kept | {LATENCY: setup.plan("rankscope", Target("latency", min(reached, 1.0)), times)}
    dense_flops = count_flops(setup.model, example_input(setup.cfg, 1)).per_sample
    speed = {}
    for allocator, allocation in kept.items():
        small = setup.compressed(allocation)
        dense_ms, small_ms = ab_latency(setup.model, small, example, repeats)
        score = top1[allocator] if allocator in top1 else evaluate(small, setup.test)["top1"]
        speed[allocator] = (count_flops(small, example_input(setup.cfg, 1)).per_sample / dense_flops, dense_ms / small_ms, score)
    return speed


def bench_model(name: str, *, budgets: tuple[float, ...] = BUDGETS, samples: int | None = None, sweep_samples: int = 1000,
                refine_samples: int = 500, evaluations: int = 40, points: int = 10, recover_at: tuple[float, ...] = (0.5,),
                steps: int = 300, latency_batch: int = 32, repeats: int = 30, seed: int = 0,
                cache_dir: str = str(DEFAULT_FOLDER), log: Callable[[str], None] = print) -> ModelBench:
    """Run steps 1-4 of the module docstring on the shipped model ``name`` (with torch's current threads).

    Each ``recover_at`` budget must be one of ``budgets``; step 4 runs at the budget closest to 0.5.
    """
    if not set(recover_at) <= set(budgets):
        raise RankscopeError(f"recovery budgets {list(recover_at)} must be among the budgets {list(budgets)}")
    start = time.perf_counter()
    setup = _setup(name, samples, sweep_samples, refine_samples, evaluations, points, seed, cache_dir)
    log(f"{name}: swept {len(setup.table)} rows, {time.perf_counter() - start:.0f} s")
    result = ModelBench(name, len(setup.test), evaluate(setup.model, setup.test)["top1"])
    kept = {}
    for budget in budgets:
        for allocator in ORDER:
            kept[(allocator, budget)] = allocation = setup.plan(allocator, Target("flops", budget))
            result.top1[(allocator, budget)] = evaluate(setup.compressed(allocation), setup.test)["top1"]
            result.flops[(allocator, budget)] = allocation.ratio
        log(f"{name} at {budget:g} of the FLOPs: " + ", ".join(f"{a} {100 * result.top1[(a, budget)]:.2f} %" for a in ORDER))
    for budget in recover_at:
        best = max(ORDER, key=lambda a: result.top1[(a, budget)])
        recovery = recover(setup.model, setup.compressed(kept[(best, budget)]), setup.train, setup.test,
                           RecoveryConfig(steps=steps, seed=seed))
        result.recovered[budget] = (best, recovery.after["top1"])
        log(f"{name} at {budget:g}: {best} after recovery ({steps} steps) {100 * recovery.after['top1']:.2f} %")
    middle = min(budgets, key=lambda b: abs(b - 0.5))
    result.speed = _speed(setup, {a: kept[(a, middle)] for a in ORDER}, {a: result.top1[(a, middle)] for a in ORDER},
                          latency_batch, repeats, cache_dir)
    result.seconds = time.perf_counter() - start
    return result


def format_model(r: ModelBench) -> str:
    """The model's three tables: top-1 without fine-tuning, after recovery, realised speed."""
    budgets = sorted({b for _, b in r.top1})
    lines = [f"{r.name}: test top-1 without fine-tuning ({r.samples} images; dense {100 * r.dense:.2f} %), FLOPs kept in brackets",
             f"{'FLOPs target':>12s} " + " ".join(f"{a:>17s}" for a in ORDER)]
    for b in budgets:
        lines.append(f"{b:12g} " + " ".join(f"{100 * r.top1[(a, b)]:7.2f} % ({r.flops[(a, b)]:.3f})" for a in ORDER))
    for b, (allocator, top1) in r.recovered.items():
        lines.append(f"after recovery at {b:g}: {allocator} {100 * top1:.2f} % ({100 * (top1 - r.dense):+.2f} points from dense)")
    lines.append(f"realised speed: {'allocator':>17s} {'FLOPs kept':>10s} {'speedup':>8s} {'speedup/FLOP reduction':>23s} {'top-1':>8s}")
    for allocator, (kept, speedup, top1) in r.speed.items():
        lines.append(f"{'':15s} {allocator:>17s} {kept:10.3f} {speedup:7.2f}x {speedup * kept:23.2f} {100 * top1:6.2f} %")
    lines.append(f"{r.name}: {r.seconds:.0f} s")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> None:
    def log(text: str) -> None:
        if args.verbose:
            print(text, flush=True)

    wins: list[bool] = []
    with torch_threads(args.threads):
        for name in args.models:
            result = bench_model(name, budgets=tuple(args.budgets), samples=args.samples, sweep_samples=args.sweep_samples,
                                 refine_samples=args.refine_samples, evaluations=args.evaluations, points=args.points,
                                 recover_at=tuple(args.recover), steps=args.steps, latency_batch=args.latency_batch,
                                 repeats=args.repeats, seed=args.seed, cache_dir=args.cache_dir, log=log)
            print(format_model(result) + "\n", flush=True)
            wins += result.wins()
    print(f"allocate: rankscope beats greedy at {sum(wins)}/{len(wins)} budgets")


def add_parser(kinds: argparse._SubParsersAction) -> None:
    """Register ``bench allocate``."""
    p = kinds.add_parser("allocate", help="allocators at 25/50/75 %% of the FLOPs: accuracy, after recovery, realised speed")
    p.add_argument("models", nargs="*", default=["fmnist-resnet", "fmnist-vit"], help="shipped models")
    p.add_argument("--budgets", nargs="+", type=argtypes.fraction("--budgets"), default=list(BUDGETS), help="FLOPs fractions to keep")
    p.add_argument("--samples", type=argtypes.positive("--samples"), default=None, help="test images scored (default: all)")
    p.add_argument("--sweep-samples", type=argtypes.positive("--sweep-samples"), default=1000, help="training images the sweep scores")
    p.add_argument("--refine-samples", type=argtypes.positive("--refine-samples"), default=500,
                   help="of those, the images rankscope's refinement scores whole models on")
    p.add_argument("--evaluations", type=int, default=40, help="whole-model evaluations of the refinement (0: none)")
    p.add_argument("--points", type=argtypes.positive("--points"), default=10, help="ranks per layer and method")
    p.add_argument("--recover", nargs="*", type=argtypes.fraction("--recover"), default=[0.5], help="budgets whose best plan is recovered")
    p.add_argument("--steps", type=int, default=300, help="fine-tune steps of the recovery (0: BatchNorm re-calibration only)")
    p.add_argument("--latency-batch", type=argtypes.positive("--latency-batch"), default=32, help="batch of the latency timings")
    p.add_argument("--repeats", type=argtypes.positive("--repeats"), default=30, help="interleaved timed calls per model")
    p.add_argument("--threads", type=argtypes.threads, default=None,
                   help="CPU threads (default: torch's, all cores; 1 times latency as on a single phone core)")
    p.add_argument("--seed", type=int, default=0, help="seed of the training and test subsets and of the recovery")
    p.add_argument("--cache-dir", default=str(DEFAULT_FOLDER), help="sweep cache folder")
    p.add_argument("--verbose", action="store_true", help="print progress")
    p.set_defaults(func=run)

"""``rankscope bench sensitivity``: the exact sweep against its batched form, the proxies and the hybrid sweep.

For each model (``fmnist-resnet`` and ``fmnist-vit`` on a seeded subset of the Fashion-MNIST training split, scored
on a test subset; ``imagenet-mobilenetv2`` on crops of the calibration photos under the fidelity task, scored on crops of
the evaluation photos, since only 20 labelled ImageNet photos ship here), every compressible layer at
``--points`` ranks of its default method, with torch's ``--threads``, no disk cache, in this process:

1. **exact**: :func:`core.sweep.sweep`, one point at a time; its wall time;
2. where the model's :class:`Setting` says so, **batched exact**: the same with ``stack`` ranks of a layer in one
   suffix pass (:meth:`core.evaluate.cached.LayerEvaluator.evaluate_variants`); its table must equal the exact
   one bit for bit (an error otherwise); and **early stop**: the exact sweep stopping each point once it is, at
   95 %, :data:`EARLY_DROP` below the dense model (:class:`core.sweep.interval.EarlyStop`); the points it let run
   must equal the exact ones bit for bit;
3. **each proxy** the task allows (:mod:`core.sweep.proxies`): wall time, Kendall τ and Spearman ρ pooled over
   every point against the exact table (:func:`core.sweep.agreement`);
4. **hybrid** (:mod:`core.sweep.hybrid`) with the best-agreeing proxy, at each FLOPs budget: wall time (the
   proxy's pass plus the exact points it asks for) and exact points scored;
5. **regret**: at each budget, the ``rankscope`` allocator on the exact table, on each proxy's, on the hybrid's and
   on the early-stopped sweep's, each refined with the same ``--refine`` whole-model evaluations on the sweep's data (:mod:`core.sweep.refine`;
   without them the knapsack's additive losses collapse every table's 50 % plan); each plan applied and scored
   on the held-out data; regret = the exact plan's headline metric minus the other's, in points (top-1 %, or
   agreement % under fidelity). Negative: the other table's plan scored higher;
6. **Ray** (only with ``--ray``): the first model's exact sweep on a local Ray instance of one CPU, then two,
   against in process, identical tables required, overhead per point (:func:`core.sweep.overhead.ray_overhead`).

The last line is ``sensitivity: hybrid <x>x faster than exact, regret <d> points at 50 % FLOPs`` for the first
model.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from core import argtypes
from core.data import eval_subset, load_dataset
from core.decompose import CACHE
from core.errors import RankscopeError
from core.models import create_model
from core.plan import apply_plan
from core.evaluate.cached import LayerEvaluator
from core.profile import example_input, task_for
from core.profile.context import torch_threads
from core.sweep import PROXIES, agreement, layer_methods, proxy_table, sweep
from core.sweep.allocate import allocate
from core.sweep.budget import Problem, Target
from core.sweep.hybrid import hybrid_table
from core.sweep.interval import EarlyStop, half_width
from core.sweep.table import DENSE

BUDGETS = (0.25, 0.5, 0.75)
EARLY_DROP = 0.05  # the early-stopped sweep drops a point once it is surely 5 points below the dense model


@dataclass(frozen=True)
class Setting:
    """How :func:`bench_model` measures one model: its sweep data and held-out data (``name[:split]`` of
    :func:`core.data.load_dataset`, with their sizes), ranks per layer, whether the batched and the early-stopped
    exact sweeps run, and refinement evaluations per plan."""

    data: str
    held_out_data: str
    samples: int
    held_out: int
    points: int
    batched: bool
    early: bool
    refine: int


# fmnist-resnet chooses on training images and is scored on test images; MobileNetV2, without labelled data, on crops
# of disjoint photos (fidelity). Its exact sweep of 46 layers at 4 ranks on 32 crops took 230 s here and each hybrid as
# long, and each held-out score of 256 crops 22 s, so the bench sweeps 16 crops, scores plans on 64, refines with 5
# evaluations and leaves its batched sweep out (it runs slower than the plain one on this CPU: see fmnist-resnet's) and
# its early stop (16 crops are one batch: there is no look between batches). Every MobileNetV2 plan at 25-75 % of the
# FLOPs keeps 0 % agreement without fine-tuning; a fourth budget of 90 %, where the tables' plans differ, took the
# command to 14.5 minutes, so it is left to `--budgets`.
# fmnist-vit's exact sweep of 18 linears at 10 ranks on 1,000 images took 49 s here: the bench sweeps 6 ranks on 500,
# refines with 5 evaluations and runs neither the batched nor the early-stopped sweep, so that all three models fit.
MODELS = {
    "fmnist-resnet": Setting("fashion-mnist:train", "fashion-mnist", 1000, 2000, 10, True, True, 20),
    "fmnist-vit": Setting("fashion-mnist:train", "fashion-mnist", 500, 1000, 6, False, False, 5),
    "imagenet-mobilenetv2": Setting("photos:train", "photos", 16, 64, 4, False, False, 5),
}
REFINE_SAMPLES = 500  # the first of the sweep's samples they are scored on (never the held-out data)


@dataclass
class ModelResult:
    """What :func:`bench_model` measured for one model (times in seconds, regrets in points)."""

    name: str
    points: int
    samples: int
    held_out: int
    headline: str
    exact_s: float
    batched_s: float = float("nan")  # not run: NaN
    early: tuple[float, int] | None = None  # the exact sweep with an early stop: (s, points stopped); None: not run
    proxies: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # proxy -> (s, tau, rho)
    hybrid: dict[float, tuple[float, int]] = field(default_factory=dict)  # budget -> (s, exact points)
    scores: dict[tuple[str, float], float] = field(default_factory=dict)  # (table, budget) -> held-out headline
    dense: float = 0.0
    best: str = ""

    def regret(self, table: str, budget: float) -> float:
        """Points the plan from ``table`` scores below the plan from the exact table at ``budget``."""
        return 100 * (self.scores[("exact", budget)] - self.scores[(table, budget)])

    def speedup(self, budget: float) -> float:
        """The exact sweep's wall time over the hybrid's at ``budget``."""
        return self.exact_s / self.hybrid[budget][0]


def _data(spec: str, cfg: Any, samples: int) -> Any:
    name, _, split = spec.partition(":")
    return eval_subset(load_dataset(name, cfg, split=split or "test"), samples)


def _timed(fn: Any) -> tuple[Any, float]:
    CACHE.clear()  # every sweep factorizes its layers itself
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _score(model: Any, table: pd.DataFrame, budget: float, example: Any, held_out: LayerEvaluator, refine_data: Any,
           refine: int) -> float:
    """The held-out headline of the plan the ``rankscope`` allocator makes from ``table`` at ``budget`` of the FLOPs."""
    problem = Problem(model, "", example, Target("flops", budget), table, data=refine_data if refine else None,
                      evaluations=refine)
    plan = allocate("rankscope", problem).plan
    small = apply_plan(model, plan)[0]
    # the full forward pass of the model with the plan's layers swapped in: the held-out references computed once
    scores = held_out.evaluate({path: small.get_submodule(path) for path in plan.layers}, path="full")
    return scores[held_out.task.headline]


def bench_model(name: str, *, points: int | None = None, samples: int | None = None, held_out: int | None = None, stack: int = 10,
                budgets: tuple[float, ...] | None = None, proxies: tuple[str, ...] = PROXIES, refine: int | None = None,
                log: Any = print) -> ModelResult:
    """Steps 1-5 of the module docstring for ``name`` (a key of :data:`MODELS`, whose :class:`Setting` fills in what is
    ``None``), with torch's current threads.

    Raises
    ------
    RankscopeError
        The batched exact sweep differs from the exact one, or a point the early stop let run does.
    """
    setting = MODELS[name]
    points = points or setting.points
    refine = setting.refine if refine is None else refine
    model, cfg = create_model(name)
    data = _data(setting.data, cfg, samples or setting.samples)
    test = LayerEvaluator(model, _data(setting.held_out_data, cfg, held_out or setting.held_out))
    task = task_for(data)
    example = example_input(cfg, 1)
    refine_data = eval_subset(data, min(len(data), REFINE_SAMPLES))
    sweep(model, eval_subset(data, 4), layers=list(layer_methods(model))[-1:], points=1)  # first-call costs untimed
    exact, exact_s = _timed(lambda: sweep(model, data, points=points))
    log(f"{name}: exact sweep {exact_s:.1f} s ({(exact['method'] != DENSE).sum()} points, {len(data)} samples)")
    result = ModelResult(name, int((exact["method"] != DENSE).sum()), len(data), test.samples, task.headline, exact_s)
    if setting.batched:
        batched, result.batched_s = _timed(lambda: sweep(model, data, points=points, stack=stack))
        metrics = [m.name for m in task.metrics]
        if not exact[metrics + ["loss"]].equals(batched[metrics + ["loss"]]):  # NaN matches NaN in place
            raise RankscopeError(f"{name}: the batched exact sweep differs from the exact sweep")
        log(f"{name}: batched exact sweep ({stack} ranks per pass) {result.batched_s:.1f} s, identical table")
    scored = {"exact": exact}
    if setting.early:
        scored["early stop"], early_s = _timed(lambda: sweep(model, data, points=points, early_stop=EarlyStop(EARLY_DROP)))
        stopped = (scored["early stop"]["samples"] < exact["samples"]).to_numpy()
        if not scored["early stop"][~stopped].equals(exact[~stopped]):
            raise RankscopeError(f"{name}: a point the early stop let run differs from the exact sweep's")
        result.early = (early_s, int(stopped.sum()))
        log(f"{name}: exact sweep with early stop at {100 * EARLY_DROP:g} points {early_s:.1f} s, {result.early[1]} points "
            "stopped, the others identical")
    tables = {}
    for proxy in proxies:
        if proxy in ("taylor", "fisher") and task.needs_reference:
            continue  # they differentiate a loss that is zero at the dense model without labels
        tables[proxy], seconds = _timed(lambda: proxy_table(model, data, proxy, points=points))
        found = agreement(tables[proxy], exact)
        result.proxies[proxy] = (seconds, found.kendall_tau, found.spearman_rho)
        log(f"{name}: {found.summary()}, {seconds:.1f} s")
    result.best = max(result.proxies, key=lambda p: result.proxies[p][1])
    result.dense = test.evaluate()[test.task.headline]
    for budget in budgets or BUDGETS:
        target = Target("flops", budget)
        hybrid, seconds = _timed(lambda: hybrid_table(model, data, target, example, proxy=result.best, points=points))
        seconds += result.proxies[result.best][0]  # the proxy pass is part of the hybrid's cost
        result.hybrid[budget] = (seconds, int(hybrid.attrs["exact_points"]))
        for label, table in ({"exact": exact, "hybrid": hybrid} | scored | tables).items():
            result.scores[(label, budget)] = _score(model, table, budget, example, test, refine_data, refine)
        log(f"{name} at {budget:g} of the FLOPs: hybrid {seconds:.1f} s, {hybrid.attrs['exact_points']} exact points; "
            + ", ".join(f"{label} {100 * value:.2f}" for (label, at), value in result.scores.items() if at == budget))
    return result


def format_result(r: ModelResult) -> str:
    """The model's timing, agreement and regret tables."""
    lines = [f"{r.name}: {r.points} points, {r.samples} samples (a point's {r.headline} within ±{100 * half_width(r.samples):.1f} "
             f"points at 95 %); held-out {r.headline} of the dense model {100 * r.dense:.2f} % on {r.held_out} (a plan's within "
             f"±{100 * half_width(r.held_out):.1f})",
             f"{'sweep':>16s} {'wall s':>8s} {'x exact':>8s} {'tau':>6s} {'rho':>6s}",
             f"{'exact':>16s} {r.exact_s:8.1f} {1.0:8.2f}",
             f"{'batched exact':>16s} {r.batched_s:8.1f} {r.exact_s / r.batched_s:8.2f}" if r.batched_s == r.batched_s
             else f"{'batched exact':>16s}  not run for this model (slower than the plain sweep on this CPU)"]
    if r.early is not None:
        lines.append(f"{'early stop':>16s} {r.early[0]:8.1f} {r.exact_s / r.early[0]:8.2f}   ({r.early[1]} points stopped "
                     f"at {100 * EARLY_DROP:g} points, the others identical)")
    for proxy, (seconds, tau, rho) in r.proxies.items():
        lines.append(f"{proxy:>16s} {seconds:8.1f} {r.exact_s / seconds:8.2f} {tau:6.3f} {rho:6.3f}")
    for budget, (seconds, exact_points) in r.hybrid.items():
        lines.append(f"{'hybrid @' + format(budget, 'g'):>16s} {seconds:8.1f} {r.exact_s / seconds:8.2f}   "
                     f"({r.best}, {exact_points} exact points)")
    labels = ["hybrid", *(["early stop"] if r.early is not None else []), *r.proxies]
    lines.append(f"regret (points of held-out {r.headline} below the exact sweep's plan), rankscope knapsack:")
    lines.append(f"{'FLOPs':>6s} {'exact plan':>11s} " + " ".join(f"{label:>10s}" for label in labels))
    for budget in r.hybrid:
        lines.append(f"{budget:6g} {100 * r.scores[('exact', budget)]:9.2f} % "
                     + " ".join(f"{r.regret(label, budget):10.2f}" for label in labels))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> None:
    results = []
    start = time.perf_counter()
    with torch_threads(args.threads):
        for name in args.models:
            results.append(bench_model(name, points=args.points, samples=args.samples, stack=args.stack, refine=args.refine,
                                       budgets=tuple(args.budgets) if args.budgets else None,
                                       log=print if args.verbose else (lambda _: None)))
            print(format_result(results[-1]), flush=True)
        if args.ray:
            from core.sweep.overhead import ray_overhead  # Ray is an optional extra

            name = args.models[0]
            model, cfg = create_model(name)
            data = _data(MODELS[name].data, cfg, args.samples or MODELS[name].samples)
            # one CPU isolates the overhead; two is the local cluster of two workers
            for overhead in ray_overhead(model, data, cpus=(1, 2), threads=1, points=args.points or MODELS[name].points):
                print(f"Ray, {name}: {overhead.summary()}")
    print(f"bench sensitivity: {time.perf_counter() - start:.0f} s")
    first = results[0]
    if 0.5 in first.hybrid:
        print(f"sensitivity: hybrid {first.speedup(0.5):.1f}x faster than exact, regret {first.regret('hybrid', 0.5):.2f} "
              "points at 50 % FLOPs")


def add_parser(kinds: argparse._SubParsersAction) -> None:
    """Register ``bench sensitivity``."""
    p = kinds.add_parser("sensitivity", help="exact, batched-exact, proxy and hybrid sweeps: time, agreement, regret")
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS), help="models (default: all)")
    p.add_argument("--points", type=argtypes.positive("--points"), default=None,
                   help="ranks per layer (default: 10 for fmnist-resnet, 6 for fmnist-vit, 4 for MobileNetV2)")
    p.add_argument("--samples", type=argtypes.positive("--samples"), default=None,
                   help="sweep samples (default: 1000 for fmnist-resnet, 500 for fmnist-vit, 16 photo crops for MobileNetV2)")
    p.add_argument("--stack", type=argtypes.positive("--stack"), default=10, help="ranks per pass of the batched sweep")
    p.add_argument("--refine", type=argtypes.positive("--refine", 0), default=None,
                   help="whole-model evaluations refining each plan, the same for every table (default: 20 for "
                        "fmnist-resnet, 5 for the others; 0: the knapsack alone)")
    p.add_argument("--budgets", nargs="+", type=argtypes.fraction("--budgets"), default=None, metavar="FLOPS",
                   help="FLOPs budgets of the hybrid and the regrets (default 0.25 0.5 0.75); the last line needs 0.5")
    p.add_argument("--threads", type=argtypes.threads, default=1, help="CPU threads (default 1)")
    p.add_argument("--ray", action="store_true", help="also measure the Ray executor's overhead (needs rankscope[ray])")
    p.add_argument("--verbose", action="store_true", help="print each step as it finishes")
    p.set_defaults(func=run)

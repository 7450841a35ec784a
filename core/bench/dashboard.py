"""``rankscope bench dashboard``: time from a rank change to updated accuracy, cached path against from scratch.

For each shipped model, on its default evaluation subset, and for a few of its layers (first, middle and
last compressible layer in forward order, or all with ``--all-layers``):

- **cached**: what the dashboard does when a rank slider moves: build the layer at the new rank from the
  cached factorization and score the model with :class:`core.evaluate.cached.LayerEvaluator`, which runs only
  the network after the layer on cached activations (both caches warmed by one earlier rank change);
- **scratch**: re-running everything: :func:`core.plan.apply_plan` of a one-layer plan with the
  factorization cache emptied, then :func:`core.profile.evaluate` of the whole model;
- **scratch, warm factors**: the same with the factorization cached, so that ``scratch_warm / cached`` is
  what the activation cache alone buys.

Each repeat changes to a different rank (so no result is reused); the medians of ``--repeats`` are
printed with their ratio. All runs share one process and ``--threads``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass

from core import argtypes
from core.data import default_dataset, eval_subset, load_dataset
from core.decompose import CACHE, applicable_methods, get_method
from core.decompose.rank import plan_value, rank_at
from core.evaluate.cached import INTERACTIVE_SAMPLES, LayerEvaluator
from core.models import create_model, list_models
from core.plan import LayerEntry, Plan, apply_plan
from core.profile import evaluate
from core.profile.context import torch_threads

FRACTIONS = (0.25, 0.5, 0.125, 0.375, 0.75, 0.0625, 0.625)  # the ranks a run cycles through, as fractions of full rank


@dataclass(frozen=True)
class BenchRow:
    """Median seconds from a rank change to updated accuracy for one layer, by each path."""

    model: str
    layer: str
    method: str
    samples: int
    cached_s: float
    scratch_s: float
    scratch_warm_s: float
    path: str

    @property
    def ratio(self) -> float:
        return self.scratch_s / self.cached_s if self.cached_s > 0 else float("inf")


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_model(name: str, *, data: str | None = None, samples: int = INTERACTIVE_SAMPLES, repeats: int = 5,
                all_layers: bool = False, threads: int | None = None) -> list[BenchRow]:
    """Time the three paths on layers of the shipped model ``name``; one :class:`BenchRow` per layer.

    ``data`` is the evaluation data (default the model's own); its task scores the update (classification with
    labels, fidelity to the dense model without, as the dashboard does).
    """
    model, cfg = create_model(name)
    dataset = eval_subset(load_dataset(default_dataset(cfg, data), cfg), samples)
    layers = []  # (path, the first data-free method that applies) in forward order
    for path, module in model.named_modules():
        methods = [m for m in applicable_methods(module) if not get_method(m).needs_calibration]
        if methods:
            layers.append((path, methods[0]))
    if not all_layers:
        layers = list({i: layers[i] for i in (0, len(layers) // 2, len(layers) - 1)}.values())
    rows = []
    with torch_threads(threads):
        evaluator = LayerEvaluator(model, dataset)
        for path, method_name in layers:
            module, method = model.get_submodule(path), get_method(method_name)
            ranks = [rank_at(method, module, f) for f in FRACTIONS]

            def cached(rank) -> None:
                evaluator.evaluate({path: method.build(module, rank)})

            def scratch(rank, cold: bool) -> None:
                if cold:
                    CACHE.clear()
                value = plan_value(rank)
                new, _ = apply_plan(model, Plan(name, {path: LayerEntry(method_name, value)}))
                evaluate(new, dataset, task=evaluator.task, reference=model)

            cached(ranks[-1])  # warm both caches with one earlier rank change, as the dashboard would have
            times = {"cached": [], "scratch": [], "warm": []}
            for i in range(repeats):
                rank = ranks[i % (len(ranks) - 1)]
                times["cached"].append(_timed(lambda: cached(rank)))
                times["scratch"].append(_timed(lambda: scratch(rank, cold=True)))
                times["warm"].append(_timed(lambda: scratch(rank, cold=False)))
            rows.append(BenchRow(name, path, method_name, len(dataset), *(statistics.median(times[k]) for k in times),
                                 evaluator.path_for([path])))
    return rows


def format_table(rows: list[BenchRow]) -> str:
    """A fixed-width table, one line per row."""
    head = (f"{'model':15s} {'layer':22s} {'method':15s} {'samples':>7s} {'cached':>9s} {'scratch':>9s} {'ratio':>6s} "
            f"{'scratch(warm factors)':>22s}  path")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.model:15s} {r.layer:22s} {r.method:15s} {r.samples:7d} {r.cached_s * 1e3:7.0f}ms {r.scratch_s * 1e3:7.0f}ms "
                     f"{r.ratio:5.1f}x {r.scratch_warm_s * 1e3:20.0f}ms  {r.path}")
    return "\n".join(lines)


def format_summary(rows: list[BenchRow]) -> str:
    """One line per model: medians over its layers of the cached and from-scratch times, and their ratio."""
    lines = []
    for model in dict.fromkeys(r.model for r in rows):
        mine = [r for r in rows if r.model == model]
        cached = statistics.median(r.cached_s for r in mine)
        scratch = statistics.median(r.scratch_s for r in mine)
        lines.append(f"{model}: rank change -> accuracy {cached * 1e3:.0f} ms cached vs {scratch * 1e3:.0f} ms from scratch "
                     f"({scratch / cached:.1f}x; median over {len(mine)} layers, {mine[0].samples} images)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> None:
    rows = []
    for name in args.models or list_models():
        mine = bench_model(name, data=args.data, samples=args.samples, repeats=args.repeats, all_layers=args.all_layers,
                           threads=args.threads)
        rows += mine
        if not args.json:
            print(format_table(mine) + "\n", flush=True)
    print(json.dumps([asdict(r) | {"ratio": r.ratio} for r in rows]) if args.json else format_summary(rows))


def add_parser(kinds: argparse._SubParsersAction) -> None:
    """Register ``bench dashboard``."""
    p = kinds.add_parser("dashboard", help="time from a rank change to updated accuracy: cached activations vs from scratch")
    p.add_argument("models", nargs="*", help="shipped models (default: all)")
    p.add_argument("--data", help="evaluation data (default: each model's own), e.g. photos:64 for fidelity")
    p.add_argument("--samples", type=argtypes.positive("--samples"), default=INTERACTIVE_SAMPLES,
                   help=f"evaluation subset size (default: the dashboard's, {INTERACTIVE_SAMPLES})")
    p.add_argument("--repeats", type=argtypes.positive("--repeats"), default=5, help="timed rank changes per layer and path (median)")
    p.add_argument("--all-layers", action="store_true", help="every compressible layer, not first/middle/last")
    p.add_argument("--threads", type=argtypes.threads, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--json", action="store_true", help="print the rows as one JSON list")
    p.set_defaults(func=run)

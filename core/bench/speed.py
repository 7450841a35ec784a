"""``rankscope bench speed``: do plans made under a latency target make real networks faster, eager and in ONNX Runtime?

For each model (``torchvision:resnet18`` and ``timm:resnet50`` with random weights at 224x224 -- weights do
not change a dense kernel's speed --, the ImageNet ``imagenet-mobilenetv2`` and the shipped ``fmnist-resnet``):

1. **plan** (per runtime, at batch 1 and 1 thread, the setting phones run): every layer with a spectrum
   (Tucker-2, spatial SVD and SVD for 3x3 convs, SVD for the rest) timed dense and at ``spectrum``'s ranks
   rounded to multiples of 16 (:class:`core.speed.LayerTimes`, cached per machine); the ``spectrum``
   allocator (a knapsack on lost weight energy, no data) under a *latency* target, the target bisected to
   the largest whose plan keeps at most ``--flops`` of the FLOPs. No layer timed slower than dense is ever
   chosen.
2. **speed**: dense and compressed, both with BatchNorm folded (:func:`core.export.fold_batchnorm`), timed
   alternately in this process (:func:`core.profile.ab.ab_calls`, ``--repeats`` calls each, fewer -- at
   least 7 -- where the dense model takes over :data:`SETTING_MS` for them), at batch 1
   and ``--batch``, on 1 and 2 threads; eager PyTorch under ``inference_mode``, and ONNX Runtime on the
   artifact ``rankscope export --format onnx`` writes (:func:`core.export.exported`: folded, ORT-optimised,
   verified). Each runtime's plan is timed on its own runtime.
   ``--variants`` adds eager rows at batch 1 on 1 thread with both models in ``channels_last`` or compiled
   by ``torch.compile`` (printed, not in the headline).
3. **quality** of each plan: top-1 agreement with the dense model (and top-1 where the data has labels and
   the weights are real) on the model's own evaluation data, and on photo crops for RGB models.

Per row: FLOPs ratio, dense and compressed medians with the spread (10th-90th percentile), the latency
ratio, and ``realised / ideal`` = (dense ms / compressed ms) / (dense FLOPs / compressed FLOPs): 1 when every
FLOP saved is time saved. The last line printed is ``speed: realised/ideal = <r> (median over models at 50 %
FLOPs, onnxruntime, batch 1, 1 thread)``.
"""
from __future__ import annotations

import argparse
import copy
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core import argtypes
from core.data import default_dataset, eval_subset, load_dataset
from core.export import exported, fold_batchnorm
from core.models import create_model
from core.models.cfg import ModelCfg
from core.plan import Plan, apply_plan
from core.plan.cost import plan_cost
from core.profile import count_flops, evaluate_tasks, example_input
from core.profile.ab import ab_calls
from core.profile.context import torch_threads
from core.profile.latency import time_calls
from core.profile.onnx_runtime import ort_session
from core.speed import DEFAULT_FOLDER, LayerTimes
from core.sweep import layer_methods
from core.sweep.allocate import allocate
from core.sweep.budget import Allocation, Problem, Target

MODELS = ("torchvision:resnet18", "timm:resnet50", "imagenet-mobilenetv2", "fmnist-resnet")
RANDOM_WEIGHTS = ("torchvision:resnet18", "timm:resnet50")  # architecture only: their accuracy means nothing
RUNTIMES = ("torch", "onnxruntime")
BISECTIONS = 10  # steps on the latency target: 2**-10 of its range
MULTIPLE = 16  # `--rank-steps`: multiples of 16 time below the trend on this CPU, multiples of 8 (not 16) above
VARIANTS = ("channels_last", "compile")  # eager forms --variants times beside plain eager
SETTING_MS = 6000.0  # time the dense model for about this long per setting (a ResNet-50 at batch 8 takes ~1 s a call)
FEWEST_REPEATS = 7


@dataclass(frozen=True)
class SpeedRow:
    """One model, runtime, batch and thread count: dense against the plan made for that runtime."""

    model: str
    runtime: str
    batch: int
    threads: int
    flops_ratio: float  # compressed FLOPs / dense FLOPs
    dense_ms: float
    dense_spread: tuple[float, float]
    small_ms: float
    small_spread: tuple[float, float]

    @property
    def speedup(self) -> float:
        """Dense milliseconds over compressed milliseconds."""
        return self.dense_ms / self.small_ms

    @property
    def realised(self) -> float:
        """Speed-up over FLOP reduction: 1 when every FLOP saved is time saved."""
        return self.speedup * self.flops_ratio

    def line(self) -> str:
        def ms(median: float, spread: tuple[float, float]) -> str:
            return f"{median:9.2f} [{spread[0]:.2f}-{spread[1]:.2f}]"

        return (f"{self.model:22s} {self.runtime:12s} {self.batch:5d} {self.threads:7d} {self.flops_ratio:6.3f} "
                f"{ms(self.dense_ms, self.dense_spread):>26s} {ms(self.small_ms, self.small_spread):>26s} "
                f"{self.speedup:6.2f}x {self.realised:8.2f}")


HEADER = (f"{'model':22s} {'runtime':12s} {'batch':>5s} {'threads':>7s} {'FLOPs':>6s} {'dense ms [p10-p90]':>26s} "
          f"{'compressed ms [p10-p90]':>26s} {'speed':>7s} {'realised':>8s}")


def latency_plan(model: nn.Module, cfg: ModelCfg, name: str, runtime: str, flops: float, *, threads: int = 1,
                 folder: Path | None = DEFAULT_FOLDER, log: Callable[[str], None] = print) -> Allocation:
    """Step 1: the ``spectrum`` plan under the largest latency target whose plan keeps at most ``flops`` of the FLOPs.

    Returns the plan at the smallest target tried when none reaches ``flops`` (its note says so).
    """
    one = example_input(cfg, 1)
    times = LayerTimes(model, one, runtime=runtime, threads=threads, folder=folder)
    problem = Problem(model, name, one, Target("latency", 1.0), layers=layer_methods(model, mix=True), times=times,
                      multiple=MULTIPLE)

    def plan_at(target: float) -> tuple[Allocation, float]:
        problem.target = Target("latency", target)  # the costs stay: the layers are placed and priced once
        result = allocate("spectrum", problem)
        costs = problem.costs
        kept = plan_cost(model, result.plan, costs.sites, costs.base_params, costs.base_flops).flops_ratio
        return result, kept

    lo, hi = 0.0, 1.0  # flops(plan_at(hi)) > flops; the answer lies in (lo, hi]
    best = None
    for _ in range(BISECTIONS):
        mid = (lo + hi) / 2
        result, kept = plan_at(mid)
        if kept <= flops:
            lo, best = mid, (result, kept)
        else:
            hi = mid
    times.save()
    if best is None:
        result, kept = plan_at(hi)
        log(f"  {name} {runtime}: no latency target gives {flops:g} of the FLOPs; closest {kept:.3f}")
        return result
    log(f"  {name} {runtime}: latency target {best[0].target.fraction:.3f} -> FLOPs {best[1]:.3f}, "
        f"{len(best[0].plan.layers)} layers factorized ({times.measured} layer timings taken, the rest cached)")
    return best[0]


def _spread(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 10)), float(np.percentile(samples, 90))


def _timed(dense: nn.Module, small: nn.Module, x: torch.Tensor, runtime: str, threads: int,
           repeats: int) -> tuple[list[float], list[float]]:
    """Step 2 at one setting: interleaved calls of the two models (their ONNX artifacts under onnxruntime)."""
    if runtime == "torch":
        with torch_threads(threads), torch.inference_mode():
            return ab_calls(lambda: dense(x), lambda: small(x), _repeats(lambda: dense(x), repeats))
    with exported(dense, x) as a, exported(small, x) as b:
        sessions = [ort_session(a.path, threads), ort_session(b.path, threads)]
        feed = {"input": x.numpy()}
        calls = (lambda: sessions[0].run(None, feed), lambda: sessions[1].run(None, feed))
        return ab_calls(*calls, _repeats(calls[0], repeats))


def _variant(model: nn.Module, variant: str) -> nn.Module:
    """``model`` as the eager variant runs it: ``channels_last`` weights, or ``torch.compile`` (inductor)."""
    if variant == "channels_last":
        return copy.deepcopy(model).to(memory_format=torch.channels_last)
    return torch.compile(copy.deepcopy(model))


def _timed_variant(dense: nn.Module, small: nn.Module, x: torch.Tensor, variant: str,
                   repeats: int) -> tuple[list[float], list[float]]:
    """Eager A/B at batch 1 on 1 thread with both models in ``variant`` (the first calls compile, untimed)."""
    if variant == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    a, b = _variant(dense, variant), _variant(small, variant)
    with torch_threads(1), torch.inference_mode():
        return ab_calls(lambda: a(x), lambda: b(x), _repeats(lambda: a(x), repeats))


def _repeats(call: Callable[[], object], most: int) -> int:
    """``most`` calls, fewer (at least :data:`FEWEST_REPEATS`) where one call takes longer than ``SETTING_MS / most``."""
    one = time_calls(call, warmup=1, repeats=1, device=torch.device("cpu"))[0]
    return max(FEWEST_REPEATS, min(most, int(SETTING_MS / one)))


def _quality(name: str, dense: nn.Module, small: nn.Module, cfg: ModelCfg, samples: int) -> str:
    """Step 3: agreement (and top-1 with labels and real weights) on the model's data, and on photo crops for RGB."""
    parts = []
    names = [default_dataset(cfg)] + (["photos:64"] if cfg.input_size[0] == 3 else [])
    for data_name in dict.fromkeys(n for n in names if n):
        data = eval_subset(load_dataset(data_name, cfg), samples)
        tasks = ["fidelity"] + (["classification"] if data_name != "photos:64" and name not in RANDOM_WEIGHTS else [])
        scores = evaluate_tasks(small, data, tasks, reference=dense)
        parts.append(f"{data_name} ({len(data)}): " + ", ".join(s.text() for s in scores))
    return "; ".join(parts)


def bench_model(name: str, *, flops: float = 0.5, batch: int = 8, repeats: int = 15, samples: int = 500,
                folder: Path | None = DEFAULT_FOLDER, variants: tuple[str, ...] = (),
                log: Callable[[str], None] = print) -> list[SpeedRow]:
    """Steps 1-3 for one model; returns a row per runtime, batch and thread count (``variants`` rows are printed only)."""
    model, cfg = create_model(name)
    model.eval()
    dense_flops = count_flops(model, example_input(cfg, 1)).per_sample
    rows = []
    for runtime in RUNTIMES:
        plan: Plan = latency_plan(model, cfg, name, runtime, flops, folder=folder, log=log).plan
        small = apply_plan(model, plan)[0].eval()
        ratio = count_flops(small, example_input(cfg, 1)).per_sample / dense_flops
        log(f"  {name} {runtime} plan quality: {_quality(name, model, small, cfg, samples)}")
        folded_dense, folded_small = fold_batchnorm(model), fold_batchnorm(small)
        for size in (1, batch):
            x = example_input(cfg, size)
            for threads in (1, 2):
                a, b = _timed(folded_dense, folded_small, x, runtime, threads, repeats)
                row = SpeedRow(name, runtime, size, threads, ratio, statistics.median(a), _spread(a),
                               statistics.median(b), _spread(b))
                rows.append(row)
                log(row.line())
        for variant in variants if runtime == "torch" else ():
            a, b = _timed_variant(folded_dense, folded_small, example_input(cfg, 1), variant, repeats)
            log(SpeedRow(name, f"+{variant}", 1, 1, ratio, statistics.median(a), _spread(a), statistics.median(b),
                         _spread(b)).line())
    return rows


def run(models: tuple[str, ...] = MODELS, *, flops: float = 0.5, batch: int = 8, repeats: int = 15, samples: int = 500,
        folder: Path | None = DEFAULT_FOLDER, variants: tuple[str, ...] = (), log: Callable[[str], None] = print) -> float:
    """Every model's rows, then the last line; returns the median realised/ideal at batch 1, 1 thread, onnxruntime."""
    log(HEADER)
    rows = [row for name in models for row in bench_model(name, flops=flops, batch=batch, repeats=repeats,
                                                          samples=samples, folder=folder, variants=variants, log=log)]
    headline = [r.realised for r in rows if r.runtime == "onnxruntime" and r.batch == 1 and r.threads == 1]
    value = statistics.median(headline)
    log(f"speed: realised/ideal = {value:.2f} (median over models at {flops:.0%} FLOPs, onnxruntime, batch 1, 1 thread)")
    return value


def rank_steps(name: str = "torchvision:resnet18", layer: str = "layer2.0.conv2", method: str = "tucker2",
               ranks: range = range(40, 73), *, folder: Path | None = DEFAULT_FOLDER,
               log: Callable[[str], None] = print) -> dict[str, dict[int, float]]:
    """Which rank multiples the kernels like: ``layer`` built by ``method`` at each rank of ``ranks`` (both modes for
    Tucker-2), timed at batch 1 on 1 thread on each runtime; per runtime the mean time of ranks that are multiples of
    16, of 8 but not 16, and the rest, each over a straight-line fit of time against rank (1: on the line)."""
    model, cfg = create_model(name)
    model.eval()
    out = {}
    for runtime in RUNTIMES:
        times = LayerTimes(model, example_input(cfg, 1), runtime=runtime, threads=1, folder=folder)
        ms = {r: times.of(layer, method, (r, r) if method == "tucker2" else r) for r in ranks}
        times.save()
        fit = np.poly1d(np.polyfit(list(ms), list(ms.values()), 1))
        over = {r: t / fit(r) for r, t in ms.items()}
        groups = {"16": [r for r in ranks if r % 16 == 0], "8": [r for r in ranks if r % 8 == 0 and r % 16],
                  "other": [r for r in ranks if r % 8]}
        summary = ", ".join(f"multiples of {k}: {np.mean([over[r] for r in v]):.3f}" if k != "other" else
                            f"others: {np.mean([over[r] for r in v]):.3f}" for k, v in groups.items())
        log(f"rank steps, {name} {layer} {method}, {runtime}, batch 1, 1 thread: time / linear fit -- {summary}")
        log("  " + " ".join(f"{r}:{t:.2f}" for r, t in ms.items()))
        out[runtime] = ms
    return out


def cmd_speed(args: argparse.Namespace) -> None:
    if args.rank_steps:
        rank_steps(folder=Path(args.cache_dir))
        return
    run(tuple(args.models), flops=args.flops, batch=args.batch, repeats=args.repeats, samples=args.samples,
        folder=Path(args.cache_dir), variants=tuple(args.variants))


def add_parser(kinds: argparse._SubParsersAction) -> None:
    """Register ``bench speed``."""
    p = kinds.add_parser("speed", help="dense vs latency-planned compressed models: eager and ONNX Runtime, batch 1 and "
                                       "larger, 1 and 2 threads")
    p.add_argument("--models", nargs="+", default=list(MODELS), help="registry names (default: %(default)s)")
    p.add_argument("--flops", type=argtypes.fraction("--flops"), default=0.5, help="FLOPs the plans keep at most")
    p.add_argument("--batch", type=argtypes.positive("--batch"), default=8, help="the larger batch timed beside batch 1")
    p.add_argument("--repeats", type=argtypes.positive("--repeats"), default=15, help="interleaved calls per model and setting")
    p.add_argument("--samples", type=argtypes.positive("--samples"), default=500, help="evaluation images per data set")
    p.add_argument("--cache-dir", default=str(DEFAULT_FOLDER), help="the per-machine layer timings (kept between runs)")
    p.add_argument("--rank-steps", action="store_true",
                   help="instead: time one ResNet-18 conv's Tucker-2 at ranks 40..72, to see which multiples the kernels like")
    p.add_argument("--variants", nargs="*", choices=VARIANTS, default=[],
                   help="also time the eager plans in these forms (batch 1, 1 thread): channels_last, compile")
    p.set_defaults(func=cmd_speed)

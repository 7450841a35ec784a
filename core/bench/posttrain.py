"""``rankscope bench posttrain``: what each post-training step gives a data-aware plan on the real models.

Per model and budget, one plan is allocated (:func:`core.budget.compress_to_budget`'s whitened allocator on the
calibration data) and applied with one set of post-training steps per row: plain ``aa_svd`` (each layer fitted on
the dense model's inputs), then BatchNorm re-estimation or shift, bias correction, sequential (anchored) fitting,
block reconstruction, each alone, and all together (the defaults). Each row: the task's metric against the dense
model's, FLOPs and parameters counted on the built model (``torch.utils.flop_counter``), latency of dense and
compressed timed alternately in this process (median of ``--repeats``), and the wall time of building it.

Everything is chosen and learnt on calibration data (crops of the calibration photos, super-resolution patches of
them, training plays); the metrics are scored on evaluation data no step has seen: the evaluation photos (top-1
agreement with the dense model), the labelled photos and ImageNet samples (top-1), set5-like (PSNR, colour
shift), the evaluation plays (perplexity).
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from core import argtypes
from core.budget import compress_to_budget, posttrain_settings
from core.data import load_dataset, training_data
from core.data.registry import eval_subset
from core.models.registry import create_model
from core.plan import apply_plan
from core.posttrain import NONE, PostTrain
from core.profile import count_flops, count_params, example_input
from core.profile.ab import ab_calls
from core.profile.context import torch_threads
from core.profile.quality import evaluate_tasks
from core.sweep.budget import Target

MODELS = ("imagenet-mobilenetv2", "srmd-x2", "smollm2-135m")
BUDGETS = {"imagenet-mobilenetv2": ("flops", (0.9, 0.75, 0.5)), "srmd-x2": ("flops", (0.5,)),
           "smollm2-135m": ("params", (0.8,))}
CALIBRATION = {"imagenet-mobilenetv2": 256, "srmd-x2": 64, "smollm2-135m": 16}  # items the steps learn from
ALLOCATION = {"imagenet-mobilenetv2": 128, "srmd-x2": 64, "smollm2-135m": 8}  # of them, the allocator's
EVALUATION = {"imagenet-mobilenetv2": 256, "srmd-x2": None, "smollm2-135m": 4}  # evaluation items (None: all)
EVAL_DATA = {"imagenet-mobilenetv2": "photos:{n}", "srmd-x2": "set5-like", "smollm2-135m": "shakespeare:{n}"}
LABELLED = ("imagenet-samples", "photos-labelled")  # the classifier's labelled evaluation sets

STEPS: dict[str, PostTrain] = {
    "aa_svd": NONE,
    "+ bn reestimate": PostTrain(sequential=False, bias=False, batchnorm="reestimate"),
    "+ bn shift": PostTrain(sequential=False, bias=False, batchnorm="shift"),
    "+ bias": PostTrain(sequential=False, bias=True, batchnorm="none"),
    "+ sequential": PostTrain(sequential=True, bias=True, batchnorm="none"),
    "+ reconstruct": replace(posttrain_settings(), sequential=False, bias=False, batchnorm="none"),
    "all (default)": posttrain_settings(),
}
BATCHNORM_ROWS = ("+ bn reestimate", "+ bn shift")  # rows only a network with BatchNorm has


@dataclass
class Row:
    """One plan with one set of steps, measured."""

    model: str
    budget: str
    steps: str
    metrics: dict[str, float]
    flops: float  # of the dense model's
    params: int
    dense_ms: float
    ms: float
    seconds: float  # building it (allocation excluded)

    def line(self) -> str:
        shown = "  ".join(f"{k} {v:.4g}" for k, v in self.metrics.items())
        return (f"{self.model:21s} {self.budget:11s} {self.steps:16s} | {shown} | FLOPs {self.flops:.3f} params "
                f"{self.params:>11,} | {self.dense_ms:.1f} -> {self.ms:.1f} ms ({self.dense_ms / self.ms:.2f}x) | "
                f"{self.seconds:.0f} s")


def metrics(name: str, model: nn.Module, dense: nn.Module, cfg, data: dict) -> dict[str, float]:
    """The model's scores on the evaluation data of ``data`` (see the module docstring)."""
    if name == "imagenet-mobilenetv2":
        out = {"agreement": evaluate_tasks(model, data["eval"], ["fidelity"], reference=dense)[0]["agreement"]}
        for label in LABELLED:
            out[f"top1 {label}"] = evaluate_tasks(model, data[label], ["classification"])[0]["top1"]
        return out
    if name == "srmd-x2":
        hr, fidelity = evaluate_tasks(model, data["eval"], ["super-resolution-x2", "super-resolution-fidelity-x2"], reference=dense)
        return {"psnr": hr["psnr"], "colour_shift": fidelity["colour_shift"]}
    return {"perplexity": evaluate_tasks(model, data["eval"], ["language-modelling"])[0]["perplexity"]}


def example(name: str, cfg) -> torch.Tensor:
    """The input FLOPs and latency are measured on: one sample (a 256 x 256 image for super-resolution)."""
    return torch.rand(1, 3, 256, 256) if name == "srmd-x2" else example_input(cfg, 1)


def bench_model(name: str, *, budgets: tuple[float, ...] | None = None, rows: tuple[str, ...] = tuple(STEPS),
                threads: int = 2, repeats: int = 5, log: Callable[[str], None] = print) -> tuple[dict, list[Row]]:
    """The dense model's metrics and one :class:`Row` per budget and set of steps, each printed as measured."""
    model, cfg = create_model(name)
    model.eval()
    kind, fractions = BUDGETS[name]
    n = EVALUATION[name]
    data = {"eval": load_dataset(EVAL_DATA[name].format(n=n), cfg)}
    if name == "imagenet-mobilenetv2":
        data.update({label: load_dataset(label, cfg) for label in LABELLED})
    calibration = eval_subset(training_data(cfg.dataset, cfg), CALIBRATION[name], seed=0)
    x = example(name, cfg)
    dense_flops = count_flops(model, x).total
    with torch_threads(threads):
        dense = metrics(name, model, model, cfg, data)
    log(f"{name:21s} dense {'  '.join(f'{k} {v:.4g}' for k, v in dense.items())} | FLOPs {dense_flops / 1e9:.3f} G "
        f"params {count_params(model):,} | calibration {len(calibration)}")
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    out = []
    for fraction in budgets or fractions:
        start = time.perf_counter()
        with torch_threads(threads):
            allocated = compress_to_budget(model, calibration, Target(kind, fraction), name=name,
                                           example=example_input(cfg, 1), steps=NONE, calibration=CALIBRATION[name],
                                           allocation=ALLOCATION[name])
        log(f"  {fraction:.0%} of the {kind}: {len(allocated.plan.layers)} layers, allocated in "
            f"{time.perf_counter() - start:.0f} s")
        inputs = torch.stack([calibration[i][0] for i in range(len(calibration))])
        for label in rows:
            if label in BATCHNORM_ROWS and not has_bn:
                continue
            steps = STEPS[label]
            start = time.perf_counter()
            with torch_threads(threads):
                plan = replace(allocated.plan, posttrain=steps if steps.active else None)
                small = allocated.model if not steps.active else apply_plan(model, plan, calibration=inputs)[0]
                seconds = time.perf_counter() - start
                scores = metrics(name, small, model, cfg, data)
                a, b = ab_calls(lambda: model(x), lambda: small(x), repeats, warmup=1)
            row = Row(name, f"{fraction:.0%} {kind}", label, scores, count_flops(small, x).total / dense_flops,
                      count_params(small), statistics.median(a), statistics.median(b), seconds)
            out.append(row)
            log(row.line())
    return dense, out


def headline(results: dict[str, tuple[dict, list[Row]]]) -> str:
    """The last line: each model's metric with every step (the default row) at the issue's budgets."""
    def best(name: str, budget: str, key: str) -> float | None:
        found = [r.metrics[key] for r in results.get(name, ({}, []))[1] if r.budget == budget and r.steps == "all (default)"]
        return found[0] if found else None

    parts = []
    mn = [best("imagenet-mobilenetv2", f"{f:.0%} flops", "agreement") for f in (0.9, 0.75)]
    parts.append("mobilenetv2 agreement " + (f"{mn[0]:.3f} at 90 %, " if mn[0] is not None else "- at 90 %, ")
                 + (f"{mn[1]:.3f} at 75 % FLOPs" if mn[1] is not None else "- at 75 % FLOPs"))
    if "srmd-x2" in results:
        dense, _ = results["srmd-x2"]
        psnr = best("srmd-x2", "50% flops", "psnr")
        parts.append(f"srmd-x2 {psnr - dense['psnr']:+.2f} dB at 50 %" if psnr is not None else "srmd-x2 - at 50 %")
    if "smollm2-135m" in results:
        dense, _ = results["smollm2-135m"]
        ppl = best("smollm2-135m", "80% params", "perplexity")
        parts.append(f"smollm2 +{100 * (ppl / dense['perplexity'] - 1):.1f} % at 80 % params" if ppl is not None
                     else "smollm2 - at 80 % params")
    return "posttrain: " + "; ".join(parts)


def cmd_posttrain(args: argparse.Namespace) -> None:
    results = {name: bench_model(name, budgets=tuple(args.budgets) if args.budgets else None, rows=tuple(args.rows),
                                 threads=args.threads, repeats=args.repeats) for name in args.models}
    print(headline(results))


def add_parser(kinds: argparse._SubParsersAction) -> None:
    """Register ``bench posttrain``."""
    p = kinds.add_parser("posttrain", help="what BatchNorm and bias correction, sequential fitting and block "
                         "reconstruction give a data-aware plan on MobileNetV2, SRMD and SmolLM2",
                         description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--budgets", nargs="+", type=argtypes.fraction("--budgets"), default=None,
                   help="fractions of each model's budget kind (default: MobileNetV2 90/75/50 %% of the FLOPs, SRMD 50 %% "
                        "of the FLOPs, SmolLM2 80 %% of the parameters)")
    p.add_argument("--rows", nargs="+", choices=list(STEPS), default=list(STEPS), help="which sets of steps")
    p.add_argument("--threads", type=argtypes.threads, default=2)
    p.add_argument("--repeats", type=argtypes.positive("--repeats"), default=5, help="timed calls per model")
    p.set_defaults(func=cmd_posttrain)

"""``rankscope bench sr``: what compression costs a real super-resolution network in PSNR, colour and time.

For ``srmd-x2`` (SRMD: ten 128 -> 128 3x3 convs at the input's resolution between an 18 -> 128 and a
128 -> 12 one) at each ``--fractions`` of its FLOPs, four plans over the wide convs (:func:`covered`; the first
and last layers stay dense): uniform ``tucker2``, ``svd`` and ``aa_svd`` (whitened by the layer inputs of
:data:`CALIBRATION` calibration patches), every covered layer keeping the same fraction of its own FLOPs so the
whole model keeps ``fraction`` (:func:`core.plan.starting.make_plan`), and the ``spectrum`` allocator (a knapsack
on lost weight energy over Tucker-2, spatial SVD and SVD per layer, no data); ranks are rounded to multiples of
:data:`UNIFORM_MULTIPLE` (uniform) and :data:`MULTIPLE` (spectrum), which CPU kernels run faster than others.
For ``waifu2x-photo-x2`` the same, and uniform ``tucker2`` with its ``ConvTranspose2d`` upsampler
(``body.12``) factored too.

Each plan row: parameters and the FLOPs ratio (of a 256 x 256 input, :data:`SIZE`); Y-PSNR / SSIM on the five
``set5-like`` photos (whole, one at a time) and their drop against the dense model; the colour shift against
the dense model's images (‖mean (ΔCb, ΔCr)‖ in 8-bit levels, :mod:`core.task.super_resolution`); CPU
milliseconds of a batch-1 256 x 256 forward, dense and compressed timed alternately in this process
(:func:`core.profile.ab.ab_calls`, ``--repeats`` calls each after one warm-up, medians) on ``--threads``; then,
for the fractions in ``--recover``, the same scores after recovery (:func:`core.recovery.distill`: ``--steps``
AdamW steps of batch :data:`BATCH` on ``sr-patches`` of the calibration photos, LR side :data:`TRAIN_SIDE`,
L1 to the dense model's output and to the HR patch, weighted :data:`ALPHA`; flips and transposes). The
evaluation photos are never trained or calibrated on.

The last line: ``sr: srmd-x2 at 50 % FLOPs after recovery: <method> <drop> dB below dense, <x>x faster (batch 1,
256x256, <t> threads)`` for the plan with the smallest drop after recovery.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from core import argtypes
from core.data.sr_photos import load_set5_like, load_sr_patches
from core.errors import RankscopeError
from core.models import create_model
from core.models.cfg import ModelCfg
from core.plan import Plan, apply_plan
from core.plan.starting import make_plan
from core.profile import count_flops, count_params, evaluate_tasks
from core.profile.ab import ab_calls
from core.profile.context import torch_threads
from core.recovery import RecoveryConfig, distill
from core.sweep.allocate import allocate
from core.sweep.budget import Problem, Target
from core.task import get_task

MODELS = ("srmd-x2", "waifu2x-photo-x2")
METHODS = ("tucker2", "svd", "aa_svd", "spectrum")
SPECTRUM_METHODS = ("tucker2", "spatial_svd", "svd")  # what the spectrum allocator chooses from per layer
WIDE = 64  # plans compress the convs with at least this many input and output channels
FRACTIONS = (0.75, 0.5, 0.25)
UPSAMPLER = "body.12"  # waifu2x's ConvTranspose2d(256, 3, 4, 2, 3)
SIZE = 256  # side of the LR input FLOPs and latency are measured on
TRAIN_SIDE = 32  # LR side of the recovery patches (64 x 64 HR): a quarter of the cost of the 64 px the model is measured at
PATCHES = 2048  # recovery patch pairs of the calibration photos
CALIBRATION = 16  # LR patches (at the model's 64 x 64) whose layer inputs aa_svd whitens with
BATCH = 16
ALPHA = 0.5  # half L1 to the dense model's images, half L1 to the HR patches
LR = 5e-5  # AdamW moves every weight by about this each step: on aa_svd's 50 % SRMD plan 1e-3 took 31.3 dB to 8.9, 3e-4 to 27.7 in 30 steps; 2e-5 gained 2.1 dB in 90
MULTIPLE = 16  # spectrum's ranks rounded to multiples of 16, the step `bench speed --rank-steps` measured fastest
UNIFORM_MULTIPLE = 8  # one rank for all ten layers: a step of 16 (svd: 14 % of a layer's FLOPs) would miss the fraction


@dataclass(frozen=True)
class Quality:
    """A model's scores on the evaluation photos: against HR and against the dense model's images."""

    psnr: float
    ssim: float
    colour_shift: float
    psnr_to_dense: float


@dataclass(frozen=True)
class SRRow:
    """One plan of one model: its cost, its speed against dense and its quality before and after recovery."""

    model: str
    plan: str
    flops_ratio: float
    params: int
    dense_ms: float
    ms: float
    before: Quality
    after: Quality | None

    def line(self, dense: Quality) -> str:
        def scores(q: Quality) -> str:
            return (f"{q.psnr:6.2f} dB ({q.psnr - dense.psnr:+6.2f}) SSIM {q.ssim:.4f} ({q.ssim - dense.ssim:+.4f}) "
                    f"shift {q.colour_shift:5.2f}")
        after = f" | recovered {scores(self.after)}" if self.after else ""
        return (f"{self.model:17s} {self.plan:22s} FLOPs {self.flops_ratio:5.3f} params {self.params:>9,} "
                f"{self.dense_ms:7.0f} -> {self.ms:7.0f} ms ({self.dense_ms / self.ms:4.2f}x) | {scores(self.before)}{after}")


def covered(model: nn.Module) -> list[str]:
    """The convolutions the plans compress: those with at least :data:`WIDE` input and output channels.

    Their first and last layers (SRMD: 18 -> 128 and 128 -> 12; 2 % of the FLOPs) are left dense: at half its
    rank the last one keeps half of the pixel shuffle's sub-pixel planes, and Tucker-2 at 50 % of every layer
    measured 9.0 dB on ``srmd-x2``.
    """
    return [path for path, m in model.named_modules()
            if type(m) is nn.Conv2d and min(m.in_channels, m.out_channels) >= WIDE]


def plans(model: nn.Module, cfg: ModelCfg, name: str, fraction: float, methods: tuple[str, ...],
          calibration: torch.Tensor) -> dict[str, Plan]:
    """The plans of one model at ``fraction`` of its FLOPs (of a :data:`SIZE` input), by label.

    The uniform plans give every covered layer the same fraction of its own FLOPs, chosen so that the whole model
    keeps ``fraction``; ``spectrum`` gets the whole-model target.
    """
    layers = covered(model)
    example = torch.zeros(1, cfg.input_size[0], SIZE, SIZE)
    flops = count_flops(model, example)
    inside = sum(flops.by_module[path] for path in layers)
    ratio = (fraction * flops.total - (flops.total - inside)) / inside
    if ratio <= 0:
        raise RankscopeError(f"{name}: the layers left dense take {1 - inside / flops.total:.1%} of the FLOPs, "
                             f"more than {fraction:.0%}")
    out: dict[str, Plan] = {}
    for method in methods:
        if method == "spectrum":
            problem = Problem(model, name, example, Target("flops", fraction),
                              layers={path: list(SPECTRUM_METHODS) for path in layers}, multiple=MULTIPLE)
            out[f"spectrum {fraction:.0%}"] = allocate("spectrum", problem).plan
            continue
        plan = make_plan(model, cfg, method, ratio=ratio, kind="flops", calibration=calibration,
                         multiple=UNIFORM_MULTIPLE)
        plan = dataclasses.replace(plan, layers={k: v for k, v in plan.layers.items() if k in layers})
        out[f"{method} {fraction:.0%}"] = plan
        if name.startswith("waifu2x") and method == "tucker2":
            upsampler = make_plan(model, cfg, method, ratio=fraction, kind="flops").layers[UPSAMPLER]
            out[f"{method} {fraction:.0%} + upsampler"] = dataclasses.replace(
                plan, layers={**plan.layers, UPSAMPLER: upsampler})
    return out


def quality(model: nn.Module, dense: nn.Module, data: object, scale: int) -> Quality:
    """:class:`Quality` of ``model`` on ``data`` from one pass (the dense model's images for the fidelity task)."""
    task = get_task(f"super-resolution-x{scale}")
    hr, fidelity = evaluate_tasks(model, data, [task, get_task(task.fidelity)], reference=dense)
    return Quality(hr["psnr"], hr["ssim"], fidelity["colour_shift"], fidelity["psnr_to_original"])


def latency(dense: nn.Module, small: nn.Module, threads: int, repeats: int) -> tuple[float, float]:
    """Median CPU ms of a batch-1 :data:`SIZE` x :data:`SIZE` forward of each, timed alternately."""
    x = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch_threads(threads), torch.inference_mode():
        a, b = ab_calls(lambda: dense(x), lambda: small(x), repeats, warmup=1)
    return statistics.median(a), statistics.median(b)


def bench_model(name: str, *, fractions: tuple[float, ...] = FRACTIONS, methods: tuple[str, ...] = METHODS,
                recover_at: tuple[float, ...] = (0.5,), steps: int = 200, threads: int = 2, repeats: int = 5,
                log: Callable[[str], None] = print) -> tuple[Quality, list[SRRow]]:
    """The dense model's quality and one :class:`SRRow` per plan, each printed as it is measured."""
    model, cfg = create_model(name)
    model.eval()
    data = load_set5_like(cfg)
    train = load_sr_patches(dataclasses.replace(cfg, input_size=(3, TRAIN_SIDE, TRAIN_SIDE)), "train", PATCHES)
    calibration = torch.stack([lr for lr, _ in load_sr_patches(cfg, "train", CALIBRATION, seed=1)])  # aa_svd's inputs
    x = torch.zeros(1, 3, SIZE, SIZE)
    dense_flops, dense_params = count_flops(model, x).total, count_params(model)
    with torch_threads(threads):
        dense = quality(model, model, data, cfg.scale)
    log(f"{name:17s} {'dense':22s} FLOPs {dense_flops / 1e9:.1f} G params {dense_params:>9,} | {dense.psnr:6.2f} dB "
        f"SSIM {dense.ssim:.4f} (set5-like, {len(data)} photos)")
    rows = []
    config = RecoveryConfig(steps=steps, batch_size=BATCH, lr=LR, alpha=ALPHA)
    for fraction in fractions:
        for label, plan in plans(model, cfg, name, fraction, methods, calibration).items():
            small = apply_plan(model, plan, calibration=calibration)[0].eval()
            with torch_threads(threads):
                before = quality(small, model, data, cfg.scale)
                after = None
                if fraction in recover_at:
                    start = time.perf_counter()
                    tuned = distill(small, model, train, config)  # SR nets have no BatchNorm to re-calibrate
                    log(f"  {label}: {steps} recovery steps in {time.perf_counter() - start:.0f} s")
                    after = quality(tuned, model, data, cfg.scale)
            dense_ms, ms = latency(model, small, threads, repeats)
            row = SRRow(name, label, count_flops(small, x).total / dense_flops, count_params(small), dense_ms, ms,
                        before, after)
            rows.append(row)
            log(row.line(dense))
    return dense, rows


def headline(dense: Quality, rows: list[SRRow], threads: int) -> str:
    """The last line: the ``srmd-x2`` 50 % plan with the smallest PSNR drop after recovery."""
    done = [r for r in rows if r.model == "srmd-x2" and r.after and r.plan.split()[1] == "50%"]
    if not done:
        return "sr: no srmd-x2 plan at 50 % FLOPs was recovered (add 0.5 to --recover)"
    best = min(done, key=lambda r: dense.psnr - r.after.psnr)
    return (f"sr: srmd-x2 at 50 % FLOPs after recovery: {best.plan.split()[0]} {dense.psnr - best.after.psnr:.2f} dB "
            f"below dense, {best.dense_ms / best.ms:.2f}x faster (batch 1, {SIZE}x{SIZE}, {threads} threads)")


def cmd_sr(args: argparse.Namespace) -> None:
    results = {name: bench_model(name, fractions=tuple(args.fractions), methods=tuple(args.methods),
                                 recover_at=tuple(args.recover), steps=args.steps, threads=args.threads,
                                 repeats=args.repeats) for name in args.models}
    if "srmd-x2" in results:
        print(headline(*results["srmd-x2"], args.threads))


def add_parser(kinds: argparse._SubParsersAction) -> None:
    """Register ``bench sr``."""
    p = kinds.add_parser("sr", help="super-resolution: PSNR, colour shift and latency of compressed SRMD and waifu2x",
                         description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--fractions", nargs="+", type=argtypes.fraction("--fractions"), default=list(FRACTIONS),
                   help="FLOPs fractions the plans keep")
    p.add_argument("--recover", nargs="*", type=argtypes.fraction("--recover"), default=[0.5],
                   help="fractions whose plans are recovered (none: no recovery)")
    p.add_argument("--steps", type=argtypes.positive("--steps"), default=200, help="recovery steps")
    p.add_argument("--threads", type=argtypes.threads, default=2)
    p.add_argument("--repeats", type=argtypes.positive("--repeats"), default=5, help="timed calls per model")
    p.set_defaults(func=cmd_sr)

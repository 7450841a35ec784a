"""``rankscope bench lm``: what low-rank compression of a language model's linears costs in perplexity, size and speed.

For ``smollm2-135m`` (210 compressible linears: q, k, v, o, gate, up, down of 30 layers; the ``lm_head`` tied to the
embedding stays dense, :func:`core.plan.starting.tied_weights`), at each ``--fractions`` of the **linears'**
parameters, three plans:

- ``svd``: plain truncated SVD, every linear keeping the same fraction of its own parameters
  (:func:`core.plan.starting.make_plan`, ``ratio=``);
- ``aa_svd``: the same ranks, whitened by the linears' inputs on ``--calibration`` windows of the calibration
  split (SVD-LLM; :mod:`core.decompose.activation_aware`);
- ``allocated``: ``aa_svd`` with per-matrix ranks from :func:`core.sweep.whitened.whitened` (a knapsack on a
  closed-form truncation loss, weighting :data:`WEIGHTING`, on the same calibration windows; the ``fisher``
  weighting's gradients from the first :data:`FISHER_WINDOWS` of them).

The linears' inputs are captured once (one forward pass over the calibration windows) and every ``aa_svd``
factorization is computed once and sliced per rank (:func:`build_plan`), for all plans and fractions.

Each plan row: parameters (whole model, and of the linears), model size (MB of float32 weights), perplexity on the
first ``--windows`` windows of the evaluation plays without fine-tuning and after the same short recovery
(:func:`core.recovery.distill`: ``--steps`` AdamW steps of :data:`RECOVERY_BATCH` windows of
:data:`RECOVERY_TOKENS` tokens of the calibration split, loss :data:`ALPHA` x per-token KL to the dense model's
next-token distributions + the rest next-token cross-entropy, peak lr ``--lr``, one-cycle), then, on ONE thread
(:func:`core.profile.context.torch_threads`), dense and compressed timed alternately in this process
(:func:`core.profile.generation.ab_generation`, ``--repeats`` rounds, medians): the prefill latency of a
:data:`PREFILL_TOKENS`-token prompt (time to the first token) and the greedy decode rate at batch 1 with the KV
cache (:data:`NEW_TOKENS` tokens after a :data:`DECODE_PROMPT`-token prompt), and the peak memory of one
:data:`PREFILL_TOKENS`-token forward (:func:`core.profile.measure_memory`, ``torch-profiler``: the tensors'
allocation peak in this process plus the weights; no allocator overhead).

The last line: ``lm: perplexity at 80 % params: svd <a>, aa_svd <b>, allocated <c> (dense <d>)`` (without
fine-tuning).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from core import argtypes
from core.decompose import CACHE, get_method
from core.errors import RankscopeError
from core.layers import layer_inputs, set_module
from core.models.cfg import ModelCfg
from core.plan import Plan, validate_plan
from core.plan.starting import make_plan, tied_weights
from core.profile import count_params, evaluate, measure_memory, model_size_mb
from core.profile.context import torch_threads
from core.profile.generation import GenerationAB, ab_generation
from core.recovery import RecoveryConfig, distill
from core.sweep.budget import Problem, Target
from core.sweep.whitened import output_fisher, truncation_losses, whitened

MODEL = "smollm2-135m"
FRACTIONS = (0.9, 0.8, 0.6)  # of the linears' parameters
PLANS = ("svd", "aa_svd", "allocated")
HEADLINE = 0.8  # the fraction the last line reports
WINDOWS = 4  # evaluation windows of 512 tokens: dense 27.96 on these (39.29 on 32); ~2 s each on one core
CALIBRATION = 8  # calibration windows of 512 tokens aa_svd whitens with and the allocator reads
FISHER_WINDOWS = 4  # of the calibration windows, for the fisher weighting's backward pass
WEIGHTING = "fisher"  # the allocator's weighting (core.sweep.whitened.WEIGHTING): 33.33 at 80 %, relative 51.61
POINTS = 16  # aa_svd ranks per matrix the allocator chooses among
STEPS = 6  # recovery steps: 8 took 37 s on one core (allocated 80 %: 33.33 -> 31.81 at lr 1e-4, 31.96 at 2e-5)
RECOVERY_BATCH = 2
RECOVERY_TOKENS = 128  # tokens per recovery window: a quarter of an evaluation window's cost
LR = 1e-4  # peak AdamW lr of the recovery (every weight, the tied embedding included)
ALPHA = 0.9  # weight of the KL to the dense model; 0.1 next-token cross-entropy
PREFILL_TOKENS = 512
DECODE_PROMPT = 16
NEW_TOKENS = 32
REPEATS = 3
TIMING_THREADS = 1


@dataclass(frozen=True)
class LMRow:
    """One plan at one fraction: its size, perplexity before and after recovery, speed against dense, memory."""

    plan: str
    fraction: float
    params: int
    linear_params: int
    size_mb: float
    perplexity: float
    recovered: float | None
    speed: GenerationAB | None
    peak_mb: float | None

    def line(self, dense_linear: int) -> str:
        """The row as a line of the table."""
        recovered = f"{self.recovered:12.2f}" if self.recovered is not None else f"{'-':>12s}"
        speed = "-"
        if self.speed is not None:
            s = self.speed
            speed = (f"{s.prefill_ms[0]:6.0f} -> {s.prefill_ms[1]:6.0f} ms ({s.prefill_speedup:4.2f}x) | "
                     f"{s.decode_tps[0]:5.1f} -> {s.decode_tps[1]:5.1f} tok/s ({s.decode_speedup:4.2f}x)")
        peak = f"{self.peak_mb:6.0f}" if self.peak_mb is not None else f"{'-':>6s}"
        return (f"{self.fraction:4.0%} {self.plan:9s} {self.params:>11,} {self.linear_params / dense_linear:6.3f} "
                f"{self.size_mb:6.1f} {self.perplexity:14.2f} {recovered} {peak} | {speed}")


HEADER = (f"{'frac':4s} {'plan':9s} {'params':>11s} {'linear':>6s} {'MB':>6s} {'perplexity':>14s} {'recovered':>12s} "
          f"{'peakMB':>6s} | prefill (dense -> plan) | decode (dense -> plan)")


def compressible_linears(model: nn.Module) -> list[str]:
    """The ``nn.Linear`` paths the plans compress: every one but those whose weight is tied to another's."""
    tied = tied_weights(model)
    return [path for path, m in model.named_modules() if isinstance(m, nn.Linear) and path not in tied]


def linear_params(model: nn.Module, layers: list[str]) -> int:
    """Parameters of the modules at ``layers`` (factored or not)."""
    return sum(p.numel() for path in layers for p in model.get_submodule(path).parameters())


@contextmanager
def factorizations_kept(entries: int) -> Iterator[None]:
    """Let the factorization cache (:data:`core.decompose.CACHE`) hold at least ``entries`` for the block: every
    linear's ``aa_svd`` and ``svd`` factorization is then computed once for all plans, then the size is restored."""
    before = CACHE.maxsize
    CACHE.maxsize = max(before, entries)
    try:
        yield
    finally:
        CACHE.maxsize = before
        CACHE.clear()


def build_plan(model: nn.Module, plan: Plan, inputs: dict[str, torch.Tensor]) -> nn.Module:
    """A compressed copy of ``model`` with the decomposition entries of ``plan`` built, data-aware ones from the
    layers' captured calibration ``inputs`` (the same tensors for every plan, so their factorizations are cached).

    :func:`core.plan.apply_plan` does the same but captures the inputs again on every call.

    Raises
    ------
    RankscopeError
        The plan does not fit the model, or a data-aware entry's layer has no captured inputs.
    """
    problems = validate_plan(plan, model)
    if problems:
        raise RankscopeError(f"the plan does not fit the model: {problems[0]}")
    new = copy.deepcopy(model)
    for path, entry in plan.layers.items():
        method = get_method(entry.method)
        if method.needs_calibration and path not in inputs:
            raise RankscopeError(f"{path}: {entry.method} needs the layer's calibration inputs, which were not captured")
        x = inputs[path] if method.needs_calibration else None
        set_module(new, path, method.build(model.get_submodule(path), entry.rank, calibration=x, **entry.options))
    return new.eval()


def model_fraction(model: nn.Module, layers: list[str], fraction: float) -> float:
    """The share of the whole model's parameters left when ``layers`` keep ``fraction`` of theirs."""
    total, inside = count_params(model), linear_params(model, layers)
    return 1 - (1 - fraction) * inside / total


def plans_at(model: nn.Module, cfg: ModelCfg, layers: list[str], fraction: float, plans: tuple[str, ...],
             calibration: object, losses: dict[str, list[float]] | None) -> dict[str, Plan]:
    """The plans of ``plans`` at ``fraction`` of the linears' parameters, by name (see the module docstring)."""
    out: dict[str, Plan] = {}
    for name in plans:
        if name == "allocated":
            example = torch.zeros(1, DECODE_PROMPT, dtype=torch.int64)
            problem = Problem(model, cfg.name, example, Target("params", model_fraction(model, layers, fraction)),
                              layers={path: ["aa_svd"] for path in layers}, data=calibration)
            out[name] = whitened(problem, losses, POINTS).plan
        else:
            plan = make_plan(model, cfg, name, ratio=fraction)
            out[name] = dataclasses.replace(plan, layers={k: v for k, v in plan.layers.items() if k in layers})
    return out


def perplexity(model: nn.Module, windows: object) -> float:
    """Perplexity of ``model`` on the text ``windows`` (the language-modelling task)."""
    return float(evaluate(model, windows, task="language-modelling")["perplexity"])


def bench(model: nn.Module, cfg: ModelCfg, evaluation: object, calibration: object, recovery: object, *,
          fractions: tuple[float, ...] = FRACTIONS, plans: tuple[str, ...] = PLANS, weighting: str = WEIGHTING,
          fisher_windows: int = FISHER_WINDOWS, config: RecoveryConfig | None = None,
          recover_at: tuple[float, ...] | None = None, timing: bool = True, repeats: int = REPEATS,
          prefill_tokens: int = PREFILL_TOKENS, decode_prompt: int = DECODE_PROMPT, new_tokens: int = NEW_TOKENS,
          log: Callable[[str], None] = print) -> tuple[float, list[LMRow]]:
    """The dense perplexity and one :class:`LMRow` per plan and fraction, each printed as it is measured.

    Parameters
    ----------
    model, cfg : a ``CausalLM`` and its cfg.
    evaluation : text windows perplexity is reported on (never calibrated or trained on).
    calibration : text windows (``(ids, next ids)`` items) aa_svd whitens with and the allocator reads.
    recovery : text windows the recovery distils on.
    fractions, plans : which plans at which fractions of the linears' parameters.
    weighting, fisher_windows : the allocator's weighting (:mod:`core.sweep.whitened`), and how many calibration
        windows its fisher gradients come from.
    config : the recovery settings (default :data:`STEPS` steps of :data:`RECOVERY_BATCH`, lr :data:`LR`,
        alpha :data:`ALPHA`, no augmentation); ``steps=0`` skips recovery.
    recover_at : the fractions whose plans are recovered (default all).
    timing : measure speed and memory (on :data:`TIMING_THREADS` thread).
    repeats, prefill_tokens, decode_prompt, new_tokens : the timing settings.
    log : where each line goes.
    """
    config = config or RecoveryConfig(steps=STEPS, batch_size=RECOVERY_BATCH, lr=LR, alpha=ALPHA, augment=False)
    recover_at = fractions if recover_at is None else recover_at
    layers = compressible_linears(model)
    dense_linear = linear_params(model, layers)
    start = time.perf_counter()
    dense = perplexity(model, evaluation)
    log(f"dense: perplexity {dense:.2f} on {len(evaluation)} windows, {count_params(model):,} params "
        f"({dense_linear:,} in {len(layers)} linears), {model_size_mb(model):.1f} MB ({time.perf_counter() - start:.0f} s)")
    tokens = torch.stack([calibration[i][0] for i in range(len(calibration))])  # (N, T)
    prompt = evaluation[0][0][:prefill_tokens].unsqueeze(0)  # (1, T)
    decode_ids = evaluation[0][0][:decode_prompt].unsqueeze(0)  # (1, t)
    rows: list[LMRow] = []
    with factorizations_kept(2 * len(layers) + 16):
        start = time.perf_counter()
        inputs = layer_inputs(model, layers, tokens) if {"aa_svd", "allocated"} & set(plans) else {}
        losses = None
        if "allocated" in plans:
            fisher = None
            if weighting == "fisher":
                subset = torch.utils.data.Subset(calibration, range(min(fisher_windows, len(calibration))))
                fisher = output_fisher(model, layers, subset)
            losses = truncation_losses(model, inputs, weighting=weighting, fisher=fisher)
        log(f"calibration: {len(calibration)} windows of {tokens.shape[1]} tokens captured and factored, "
            f"allocator weighting {weighting} ({time.perf_counter() - start:.0f} s)")
        for fraction in fractions:
            for name, plan in plans_at(model, cfg, layers, fraction, plans, calibration, losses).items():
                start = time.perf_counter()
                small = build_plan(model, plan, inputs)
                before = perplexity(small, evaluation)
                after = None
                if config.steps and fraction in recover_at:
                    after = perplexity(distill(small, model, recovery, config), evaluation)
                speed = peak = None
                if timing:
                    with torch_threads(TIMING_THREADS):
                        speed = ab_generation(model, small, prompt, decode_ids, new_tokens, repeats)
                        peak = measure_memory(small, prompt, threads=TIMING_THREADS, method="torch-profiler").peak_mb
                row = LMRow(name, fraction, count_params(small), linear_params(small, layers), model_size_mb(small),
                            before, after, speed, peak)
                rows.append(row)
                if len(rows) == 1:
                    log(HEADER)
                log(f"{row.line(dense_linear)}   ({time.perf_counter() - start:.0f} s)")
                del small
    return dense, rows


def headline(dense: float, rows: list[LMRow], fraction: float = HEADLINE) -> str:
    """The last line: each plan's perplexity at ``fraction`` of the linears' parameters, without fine-tuning."""
    found = {r.plan: r.perplexity for r in rows if math.isclose(r.fraction, fraction)}
    parts = ", ".join(f"{name} {found[name]:.2f}" if name in found else f"{name} -" for name in PLANS)
    return f"lm: perplexity at {fraction * 100:.0f} % params: {parts} (dense {dense:.2f})"


def cmd_lm(args: argparse.Namespace) -> None:
    from core.data.text import load_shakespeare
    from core.models import create_model

    start = time.perf_counter()
    model, cfg = create_model(MODEL)
    model.eval()
    evaluation = load_shakespeare(cfg, "test", count=args.windows)
    calibration = load_shakespeare(cfg, "train", count=args.calibration)
    recovery = load_shakespeare(dataclasses.replace(cfg, input_size=(RECOVERY_TOKENS,)), "train",
                                count=max(args.steps * RECOVERY_BATCH, 1))
    config = RecoveryConfig(steps=args.steps, batch_size=RECOVERY_BATCH, lr=args.lr, alpha=ALPHA, augment=False)
    print(f"{MODEL}: {args.windows} evaluation windows, {args.calibration} calibration windows of {cfg.input_size[0]} "
          f"tokens; recovery {args.steps} steps x {RECOVERY_BATCH} windows of {RECOVERY_TOKENS} tokens "
          f"(lr {args.lr:g}, alpha {ALPHA}); timing on {TIMING_THREADS} thread, {args.repeats} rounds; "
          f"other work on {args.threads} thread(s)")
    with torch_threads(args.threads):
        dense, rows = bench(model, cfg, evaluation, calibration, recovery, fractions=tuple(args.fractions),
                            weighting=args.weighting, config=config,
                            recover_at=None if args.recover is None else tuple(args.recover),
                            repeats=args.repeats)
    print(f"wall time {time.perf_counter() - start:.0f} s")
    print(headline(dense, rows))


def add_parser(kinds: argparse._SubParsersAction) -> None:
    """Register ``bench lm``."""
    from core.sweep.whitened import WEIGHTINGS

    p = kinds.add_parser("lm", help="language model: perplexity, size, prefill/decode speed of compressed smollm2-135m",
                         description=__doc__.splitlines()[0])
    p.add_argument("--fractions", nargs="+", type=argtypes.fraction("--fractions"), default=list(FRACTIONS),
                   help="fractions of the linears' parameters the plans keep")
    p.add_argument("--windows", type=argtypes.positive("--windows"), default=WINDOWS,
                   help="evaluation windows of 512 tokens")
    p.add_argument("--calibration", type=argtypes.positive("--calibration"), default=CALIBRATION,
                   help="calibration windows of 512 tokens")
    p.add_argument("--weighting", choices=WEIGHTINGS, default=WEIGHTING, help="the allocator's loss weighting")
    p.add_argument("--steps", type=int, default=STEPS, help="recovery steps (0: none)")
    p.add_argument("--lr", type=float, default=LR, help="recovery peak learning rate")
    p.add_argument("--recover", nargs="*", type=argtypes.fraction("--recover"), default=None,
                   help="fractions whose plans are recovered (default: every one of --fractions)")
    p.add_argument("--repeats", type=argtypes.positive("--repeats"), default=REPEATS, help="timed rounds per plan")
    p.add_argument("--threads", type=argtypes.threads, default=1, help="threads of everything but the timing")
    p.set_defaults(func=cmd_lm)

"""Sub-commands over many ranks at once: the sensitivity ``sweep`` and the budget ``allocate``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from tqdm import tqdm
from torch import nn
from torch.utils.data import Dataset

from core import argtypes
from core.cli.common import add_model_args, load_model
from core.data import default_dataset, eval_subset, load_dataset, training_data
from core.errors import RankscopeError
from core.budget import CALIBRATION, RECONSTRUCT_STEPS, compress_to_budget, posttrain_settings
from core.io import check_writable
from core.models.cfg import ModelCfg
from core.plan import save_plan
from core.plan.saved import check_new_folder, save_compressed
from core.posttrain import BATCHNORM_MODES, NONE, PostTrain
from core.profile import example_input, task_for
from core.profile.checks import RUNTIMES
from core.profile.context import torch_threads
from core.speed import LayerTimes
from core.sweep import DEFAULT_FOLDER, RayExecutor, SweepCache, data_key, layer_methods, sweep, write_table
from core.sweep.allocate import ALLOCATORS, NEEDS_TABLE, WHITENED, allocate
from core.sweep.budget import Allocation, Problem, Target
from core.sweep.engine import SWEEP_SAMPLES
from core.sweep.hybrid import hybrid_table
from core.sweep.interval import CONFIDENCE, EarlyStop, check_proportion, half_width, samples_for
from core.sweep.proxies import PROXIES, proxy_table


def sweep_table(args: argparse.Namespace, model: nn.Module, cfg: ModelCfg, *, latency: bool, mix: bool = False,
                split: str = "test", executor: str | RayExecutor = "local") -> tuple[pd.DataFrame, Dataset]:
    """``(table, dataset)``: the sensitivity table of ``args``' grid (mixed methods when ``mix``) on a seeded subset of
    ``split``, through the sweep cache; predicted by ``args.proxy`` (:mod:`core.sweep.proxies`) when it is set, only the
    points that decide an allocation at ``args.hybrid_target`` scored exactly when that is set too
    (:mod:`core.sweep.hybrid`), else computed by ``executor`` (:func:`core.sweep.sweep`)."""
    data_name = default_dataset(cfg, args.data)
    if not data_name:
        raise RankscopeError("a sweep scores the model: give evaluation data with --data")
    source = training_data(data_name, cfg) if split == "train" else load_dataset(data_name, cfg)
    if args.ci is not None:  # the subset a stated interval on the headline needs, worst case over the points
        headline = check_proportion(task_for(source))
        wanted = samples_for(args.ci / 100, args.confidence)
        args.samples = min(wanted, len(source))
        print(f"{wanted} samples keep every point's {headline.title} within ±{args.ci:g} points at {100 * args.confidence:g} % "
              "confidence" + (f"; the data has {len(source)}: ±{100 * half_width(len(source), args.confidence):.2f}"
                              if wanted > len(source) else ""), file=sys.stderr)
    dataset = eval_subset(source, args.samples, seed=args.seed)
    key = data_key(data_name if split == "test" else f"{data_name}-{split}", args.samples, args.seed)
    cache = None if args.no_cache else SweepCache(key, Path(args.cache_dir))

    def progress(done: int, total: int) -> None:
        print(f"\rswept {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)

    def scored(done: int, total: int) -> None:
        print(f"\rscored {done}/{total} layers", end="\n" if done == total else "", file=sys.stderr, flush=True)

    proxy, hybrid = getattr(args, "proxy", None), getattr(args, "hybrid_target", None)
    with torch_threads(args.threads):
        if hybrid is not None:
            table = hybrid_table(model, dataset, hybrid, example_input(cfg, 1), proxy=proxy, layers=args.layers,
                                 methods=args.methods, points=args.points, mix=mix, multiple=rank_multiple(args),
                                 cache=cache, progress=progress)
        elif proxy is not None:
            table = proxy_table(model, dataset, proxy, layers=args.layers, methods=args.methods, points=args.points,
                                mix=mix, multiple=rank_multiple(args), cache=cache, progress=scored)
        else:
            early = EarlyStop(args.early_stop / 100, args.confidence) if args.early_stop is not None else None
            table = sweep(model, dataset, layers=args.layers, methods=args.methods, points=args.points, mix=mix,
                          multiple=rank_multiple(args), latency=latency, latency_batch=args.latency_batch, cache=cache,
                          progress=progress, executor=executor, early_stop=early)
    return table, dataset


def sweep_executor(args: argparse.Namespace) -> str | RayExecutor:
    """``--executor`` and ``--address`` as :func:`core.sweep.sweep`'s executor (checked before the model loads)."""
    if args.executor != "ray":
        if args.address is not None:
            raise RankscopeError("--address is where a Ray cluster runs: give it with --executor ray")
        return args.executor
    if args.proxy is not None:
        raise RankscopeError("--executor ray computes the exact sweep and a --proxy table is one pass: leave out one of them")
    return RayExecutor(args.address)


def check_early_stop(args: argparse.Namespace) -> None:
    """A one-line error when ``--early-stop`` comes with ``--proxy`` (before any work)."""
    if args.early_stop is not None and args.proxy is not None:
        raise RankscopeError("--early-stop stops exact points early and a --proxy table evaluates none: leave out one of them")


def hybrid_target(args: argparse.Namespace, target: Target | None) -> Target | None:
    """``target`` when ``--hybrid`` asks for a hybrid sweep (checked: it needs ``--proxy``), else ``None``."""
    if not args.hybrid:
        return None
    if args.proxy is None:
        raise RankscopeError("--hybrid re-scores exactly what a proxy chose: give the proxy with --proxy")
    return target


def cmd_sweep(args: argparse.Namespace) -> None:
    if args.proxy is not None and args.latency:
        raise RankscopeError("--latency times the built layers and a --proxy table builds none: leave out one of them")
    check_early_stop(args)
    args.hybrid_target = hybrid_target(args, Target("flops", args.hybrid) if args.hybrid else None)
    executor = sweep_executor(args)
    model, cfg = load_model(args)
    table, _ = sweep_table(args, model, cfg, latency=args.latency, executor=executor)
    write_table(table, args.out)
    made = f", predicted by the {args.proxy} proxy" if args.proxy is not None else ""
    if args.hybrid_target is not None:
        made = (f"; {table.attrs['exact_points']} scored exactly where the {args.proxy} proxy's plan at {args.hybrid:g} of "
                "the FLOPs is decided, the others the proxy's scores on the exact scale")
    print(f"wrote {args.out}: {len(table)} rows ({(table['method'] != 'dense').sum()} points{made})")


def rank_multiple(args: argparse.Namespace) -> int:
    """``--rank-multiple``, by default 16 under a latency target and 1 otherwise: CPU kernels work in channel blocks, and
    on this project's CPU (AVX2) ranks that are multiples of 16 time below the trend and multiples of 8 alone above
    it (``rankscope bench speed --rank-steps``)."""
    if args.rank_multiple is not None:
        return args.rank_multiple
    return 16 if getattr(args, "target_latency", None) is not None else 1


def allocate_steps(args: argparse.Namespace) -> PostTrain | None:
    """The post-training steps ``allocate``'s flags ask for: by default all of them for the whitened allocator and
    none for the others (``--posttrain`` adds them there); ``None`` for none."""
    wanted = args.posttrain if args.posttrain is not None else args.allocator == WHITENED
    if not wanted:
        return None
    return posttrain_settings(sequential=not args.no_sequential, bias=not args.no_bias_correction,
                              batchnorm=args.batchnorm, reconstruct=args.reconstruct)


def allocate_budgeted(args: argparse.Namespace, model: nn.Module, cfg: ModelCfg, target: Target,
                      steps: PostTrain | None, times: LayerTimes) -> Allocation:
    """``allocate`` with the whitened allocator: :func:`core.budget.compress_to_budget` on the training split."""
    data_name = default_dataset(cfg, args.data)
    if not data_name:
        raise RankscopeError("the whitened allocator learns from calibration data: give it with --data")
    data = eval_subset(training_data(data_name, cfg), args.calibration, seed=args.seed)
    with torch_threads(args.threads), tqdm(unit="block", desc="post-training", disable=steps is None) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        result = compress_to_budget(model, data, target, name=args.model, example=example_input(cfg, 1),
                                    steps=steps or NONE, calibration=args.calibration, layers=args.layers,
                                    multiple=rank_multiple(args), times=times, progress=progress)
    print(result.report.summary(), file=sys.stderr)
    if args.save is not None:
        save_compressed(result.model, result.plan, args.model, Path(args.save))
        print(f"wrote {args.save}: load it with create_model('file:{args.save}')")
    return result.allocation


def cmd_allocate(args: argparse.Namespace) -> None:
    kind, fraction = next((k, v) for k in ("flops", "params", "latency") if (v := getattr(args, f"target_{k}")) is not None)
    check_writable(args.out)  # before loading the model and sweeping, not after
    if args.save is not None:
        check_new_folder(Path(args.save))
    check_early_stop(args)
    if args.allocator is None:  # a proxy makes a sweep table, which the rankscope allocator reads
        args.allocator = "rankscope" if args.proxy is not None else WHITENED
    steps = allocate_steps(args)
    if args.allocator != WHITENED and (args.save is not None or steps is not None):
        raise RankscopeError(f"--save and --posttrain go with the whitened allocator (the {args.allocator} allocator "
                             "writes a plan; apply it with rankscope apply)")
    args.hybrid_target = hybrid_target(args, Target(kind, fraction))
    if args.proxy is not None and args.allocator not in NEEDS_TABLE:
        raise RankscopeError(f"--proxy makes a sweep table and the {args.allocator} allocator reads none")
    model, cfg = load_model(args)
    times = LayerTimes(model, example_input(cfg, args.latency_batch), runtime=args.runtime, threads=args.threads,
                       folder=None if args.no_cache else Path(args.cache_dir).parent / "latency")
    if args.allocator == WHITENED:
        result = allocate_budgeted(args, model, cfg, Target(kind, fraction), steps, times)
        finish_allocate(args, result, kind, fraction)
        return
    table, layers, data = None, None, None
    if args.allocator in NEEDS_TABLE:
        # chosen on training images, so that the test split stays for reporting the plan's accuracy
        table, data = sweep_table(args, model, cfg, latency=False, mix=args.allocator == "rankscope", split="train")
    else:
        layers = layer_methods(model, args.layers, args.methods, mix=args.allocator == "spectrum")
    problem = Problem(model, args.model, example_input(cfg, 1), Target(kind, fraction), table, layers,
                      data=data if args.allocator == "rankscope" else None, times=times, multiple=rank_multiple(args))
    with torch_threads(args.threads):
        result = allocate(args.allocator, problem)
    finish_allocate(args, result, kind, fraction)


def finish_allocate(args: argparse.Namespace, result: Allocation, kind: str, fraction: float) -> None:
    """Write the allocation's plan and say whether it meets the target."""
    save_plan(result.plan, args.out)
    print(f"wrote {args.out}: {result.summary()}")
    if not result.met:
        print(f"rankscope: the {kind} target {fraction:g} is out of reach for the {args.allocator} allocator; "
              f"the plan written is the closest it found ({result.ratio:.4f} of dense)", file=sys.stderr)


def add_sweep_args(p: argparse.ArgumentParser) -> None:
    """The grid, data and cache options ``sweep`` and ``allocate`` share."""
    p.add_argument("--layers", nargs="+", help="module paths (default: every layer a data-free method applies to)")
    p.add_argument("--methods", nargs="+", help="data-free methods, each on the layers it applies to (default: one per layer; "
                   "allocate's rankscope allocator adds tucker2's alternatives spatial_svd, tt and svd)")
    p.add_argument("--points", type=argtypes.positive("--points"), default=10, help="ranks per layer and method, 1 to full rank")
    p.add_argument("--data", help="evaluation data (default: the model's own; allocate learns from its training split; "
                   "unlabelled data such as photos:N is scored by fidelity to the dense model)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--samples", type=argtypes.positive("--samples"), default=SWEEP_SAMPLES,
                      help="images scored per point (sweep: of the test split; allocate: of the training split)")
    size.add_argument("--ci", type=argtypes.points("--ci"), default=None, metavar="POINTS",
                      help="instead of --samples: as many as keep every point's headline (a share of the samples: "
                           "top-1, agreement) within ±POINTS at --confidence (worst case, at 50 %%)")
    p.add_argument("--early-stop", type=argtypes.points("--early-stop"), default=None, metavar="POINTS",
                   help="stop scoring a point after the batch that puts its headline, at --confidence, more than POINTS "
                        "below the dense model's on the same samples (its row's samples say how many; not cached)")
    p.add_argument("--confidence", type=argtypes.fraction("--confidence"), default=CONFIDENCE,
                   help="confidence of --ci's interval and of --early-stop's decision (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="seed of the evaluation subset")
    p.add_argument("--threads", type=argtypes.threads, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--latency-batch", type=argtypes.positive("--latency-batch"), default=1, help="batch of the latency timings")
    p.add_argument("--rank-multiple", type=argtypes.positive("--rank-multiple"), default=None,
                   help="round ranks to this multiple (default 16 under --target-latency, else 1)")
    p.add_argument("--cache-dir", default=str(DEFAULT_FOLDER), help="sweep cache folder")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the sweep cache")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register this module's sub-commands."""
    p = sub.add_parser("sweep", help="sensitivity table: accuracy, loss, cost (and latency) of each layer at each rank")
    add_model_args(p)
    add_sweep_args(p)
    p.add_argument("--latency", action="store_true", help="also time each layer at each rank")
    p.add_argument("--proxy", choices=PROXIES, default=None,
                   help="predict every point from one pass over the data instead of evaluating it: whitened (calibration "
                        "output error), taylor (first-order loss change), fisher (diagonal-Fisher loss increase) or "
                        "energy (weight energy dropped); --samples is the calibration size")
    p.add_argument("--hybrid", type=argtypes.fraction("--hybrid"), default=None, metavar="FLOPS",
                   help="with --proxy: score exactly only the points that decide a plan at this share of the FLOPs "
                        "(the proxy everywhere else decides where to look; the table holds the exact rows)")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where the points are computed: local (this process) or ray (a Ray cluster, one task per layer; "
                        "needs pip install 'rankscope[ray]')")
    p.add_argument("--address", default=None,
                   help="with --executor ray: the cluster to join, auto (the one `ray start` made this machine part of) "
                        "or HOST:PORT of its head (default: a local Ray instance for this sweep)")
    p.add_argument("--out", required=True, help="table to write (.csv)")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("allocate", help="choose a rank per layer to meet a parameter, FLOP or latency target")
    add_model_args(p)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-flops", type=argtypes.fraction("--target-flops"), help="keep this fraction of the FLOPs")
    target.add_argument("--target-params", type=argtypes.fraction("--target-params"), help="keep this fraction of the parameters")
    target.add_argument("--target-latency", type=argtypes.fraction("--target-latency"), help="keep this fraction of the measured latency")
    p.add_argument("--allocator", choices=list(ALLOCATORS), default=None,
                   help="whitened (the default, or rankscope with --proxy: aa_svd ranks from each layer's "
                        "Fisher-weighted whitened truncation loss on calibration data, then the post-training steps), "
                        "rankscope (knapsack on the sweep), greedy "
                        "(AIMET), uniform, energy, vbmf or spectrum (knapsack on lost weight energy, no data)")
    steps = p.add_argument_group("post-training steps (default: all of them with the whitened allocator)")
    steps.add_argument("--posttrain", action=argparse.BooleanOptionalAction, default=None,
                       help="record and run the post-training steps (default: on for whitened, off for the others)")
    steps.add_argument("--no-sequential", action="store_true",
                       help="fit every layer on the dense inputs instead of the compressed prefix's")
    steps.add_argument("--no-bias-correction", action="store_true", help="leave the layers' mean output shift")
    steps.add_argument("--batchnorm", choices=BATCHNORM_MODES, default="shift",
                       help="BatchNorm statistics after compression: shift (by the compressed-minus-dense moments, "
                            "default), reestimate (from scratch on the calibration data) or none")
    steps.add_argument("--reconstruct", type=argtypes.positive("--reconstruct", least=0), default=RECONSTRUCT_STEPS,
                       metavar="STEPS", help=f"Adam steps of block reconstruction per block (0: off; default "
                                             f"{RECONSTRUCT_STEPS})")
    steps.add_argument("--calibration", type=argtypes.positive("--calibration"), default=CALIBRATION,
                       help=f"calibration samples of the training split the steps learn from (default {CALIBRATION})")
    p.add_argument("--save", default=None, metavar="DIR",
                   help="with the whitened allocator: also write the compressed model to this new folder")
    p.add_argument("--runtime", choices=RUNTIMES, default="torch",
                   help="runtime the layers are timed on (latency targets, and the latency every plan reports)")
    add_sweep_args(p)
    p.add_argument("--proxy", choices=PROXIES, default=None,
                   help="allocate from a proxy's table (one pass, core.sweep.proxies) instead of the exact sweep's")
    p.add_argument("--hybrid", action="store_true",
                   help="with --proxy: score exactly the points that decide the plan at the target, allocate from them")
    p.add_argument("--out", required=True, help="plan file to write (.yaml or .json)")
    p.set_defaults(func=cmd_allocate)

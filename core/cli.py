"""The ``rankscope`` command: every sub-command is a thin front end over a ``core`` function.

Errors in the user's input (``RankscopeError``) print one line to stderr and exit with code 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from core.errors import RankscopeError

EXIT_USAGE = 2


def _positive(kind: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{kind} must be an integer, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{kind} must be at least 1, got {value}")
        return value

    return parse


def _threads(text: str) -> int:
    value = _positive("--threads")(text)
    cores = os.cpu_count() or 1
    if value > cores:
        raise argparse.ArgumentTypeError(f"--threads {value} is larger than this machine's {cores} cores")
    return value


def _fraction(flag: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a number, got {text!r}") from None
        if not 0 < value <= 1:
            raise argparse.ArgumentTypeError(f"{flag} must be in (0, 1], got {value}")
        return value

    return parse


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="shipped name (see `rankscope models`), timm:<arch>, torchvision:<arch> or file:<path>")
    p.add_argument("--weights", help="weights file (safetensors or a torch state_dict) for the architecture")
    p.add_argument("--arch", help="architecture of a file:<weights> checkpoint, e.g. fmnist-resnet")


def _load(args: argparse.Namespace):
    from core.models import create_model

    return create_model(args.model, weights=args.weights, arch=args.arch)


def cmd_models(args: argparse.Namespace) -> None:
    from core.models import create_model, list_models

    for name in list_models():
        _, cfg = create_model(name)
        acc = cfg.card.get("test_accuracy")
        note = f"test top-1 {acc:.4f}" if acc is not None else "untrained (run `rankscope train`)"
        print(f"{name:23s} {cfg.dataset:14s} input {'x'.join(map(str, cfg.input_size)):8s} {note}")
    print("also: timm:<arch>, torchvision:<arch>, file:<path>")


def cmd_layers(args: argparse.Namespace) -> None:
    from core.layers import describe_layers

    model, cfg = _load(args)
    table = describe_layers(model, cfg)
    if args.json:
        print(table.to_json(orient="records"))
        return
    import pandas as pd

    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 60):
        shown = table.assign(flops_share=(100 * table["flops_share"]).round(2).astype(str) + " %")
        print(shown.to_string(index=False))


def cmd_groups(args: argparse.Namespace) -> None:
    from core.profile import example_input
    from core.resample import capacity

    model, cfg = _load(args)
    table = capacity(model, example_input(cfg, 1), args.energy)
    if args.json:
        print(table.to_json(orient="records"))
        return
    print(table.assign(recommended_density=table["recommended_density"].round(3)).to_string(index=False))
    print(f"capacity estimate: twice the DCT frequencies holding {args.energy:.0%} of each group's energy, over its channels")


def _compressed(args: argparse.Namespace, loaded: tuple | None = None):
    """The model (with ``args.plan`` applied when given), its cfg, and the evaluation data name.

    ``loaded`` is ``_load(args)``'s result when the caller has it already (``apply_plan`` leaves it untouched).
    """
    from core.data import labelled_batch
    from core.plan import apply_plan, load_plan
    from core.plan_kinds import data_needs
    from core.profile import example_input

    model, cfg = loaded or _load(args)
    data_name = args.data or ("" if cfg.dataset == "imagenet" else cfg.dataset)
    if args.plan:
        plan = load_plan(args.plan)
        calibration = labels = None
        need_inputs, need_labels = data_needs(plan)
        if need_inputs:
            if not data_name:
                what = "labelled data (gradient-based pruning scores)" if need_labels else "calibration data (data-aware layers)"
                raise RankscopeError(f"the plan needs {what}: give it with --data")
            calibration, labels = labelled_batch(data_name, cfg)
        model, report = apply_plan(model, plan, force=args.force, calibration=calibration, labels=labels,
                                   example=example_input(cfg, 1))
        print(report.summary(), file=sys.stderr)
    return model, cfg, data_name


def cmd_profile(args: argparse.Namespace) -> None:
    from core.data import eval_subset, load_dataset
    from core.profile import profile_model

    model, cfg, data_name = _compressed(args)
    dataset = None
    if data_name:  # no ImageNet ships: library models are profiled without accuracy unless --data is given
        dataset = eval_subset(load_dataset(data_name, cfg), args.samples, seed=args.seed)
    result = profile_model(
        model, cfg, dataset=dataset, batch=args.batch, threads=args.threads, device=args.device,
        runtime=args.runtime, progress=not args.json,
    )
    if not args.json:
        for key, value in result.to_dict().items():
            print(f"{key:18s} {value}")
    print(json.dumps(result.to_dict()))


def cmd_apply(args: argparse.Namespace) -> None:
    from core.plan import load_plan
    from core.savedir import save_compressed

    model, _, _ = _compressed(args)
    save_compressed(model, load_plan(args.plan), args.model, Path(args.out))
    print(f"wrote {args.out}: load it with create_model('file:{args.out}')")


def cmd_plan(args: argparse.Namespace) -> None:
    from core.autoplan import make_plan
    from core.plan import save_plan

    from core.data import calibration_batch
    from core.decompose.registry import get_method

    model, cfg = _load(args)
    calibration = None
    if get_method(args.method).needs_calibration:
        data_name = args.data or ("" if cfg.dataset == "imagenet" else cfg.dataset)
        if not data_name:
            raise RankscopeError(f"{args.method} is data-aware: give calibration data with --data")
        calibration = calibration_batch(data_name, cfg)
    plan = make_plan(model, cfg, args.method, energy=args.energy, ratio=args.ratio, vbmf=args.vbmf,
                     kind=args.ratio_of, calibration=calibration)
    plan.model = args.model
    save_plan(plan, args.out)
    print(f"wrote {args.out}: {len(plan.layers)} layer(s), {len(plan.skipped)} skipped")
    for path, why in plan.skipped.items():
        print(f"  skipped {path}: {why}")


def cmd_train(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from core.paths import ASSETS
    from core.train import RECIPES, train

    if args.model == "fmnist-resnet-integral":  # integral fine-tuning of the shipped fmnist-resnet (core.resample.integral)
        from core.resample.integral import main

        flags = {"--steps": args.steps, "--seed": args.seed, "--threads": args.threads, "--out": args.out}
        print(json.dumps(main([str(x) for k, v in flags.items() if v is not None for x in (k, v)])))
        return
    if args.model not in RECIPES:
        raise RankscopeError(f"no training recipe for {args.model!r}; recipes exist for {', '.join(RECIPES)} "
                             "and fmnist-resnet-integral")
    cfg = RECIPES[args.model]
    overrides = {k: v for k, v in {"epochs": args.epochs, "seed": args.seed, "threads": args.threads}.items() if v is not None}
    out = Path(args.out) if args.out else ASSETS / "models" / args.model
    card = train(args.model, replace(cfg, **overrides), out)
    print(json.dumps(card))


def cmd_finetune(args: argparse.Namespace) -> None:
    from tqdm.auto import tqdm

    from core.data import eval_subset, load_dataset
    from core.plan import load_plan
    from core.profile.context import torch_threads
    from core.recovery import RecoveryConfig, recover
    from core.savedir import check_new_folder, save_compressed

    out = Path(args.out)
    check_new_folder(out)  # before minutes of fine-tuning, not after
    config = RecoveryConfig(**{k: v for k, v in {"steps": args.steps, "batch_size": args.batch, "lr": args.lr}.items() if v is not None},
                            seed=args.seed)
    with torch_threads(args.threads):
        original, cfg = _load(args)
        compressed, _, data_name = _compressed(args, (original, cfg))
        if not data_name:
            raise RankscopeError("fine-tuning needs labelled training data: give it with --data")
        train_data = load_dataset(data_name, cfg, split="train")
        eval_data = eval_subset(load_dataset(data_name, cfg), args.samples, seed=args.seed)
        with tqdm(total=config.steps, unit="step", desc="fine-tune", disable=not config.steps) as bar:
            result = recover(original, compressed, train_data, eval_data, config, device=args.device,
                             progress=lambda done, total: bar.update(1))
    bn = f"{result.batchnorm_layers} BatchNorm layers" if result.batchnorm_layers else "no BatchNorm layers: skipped"
    for label, acc in (("original", result.original), ("compressed", result.before),
                       (f"after BN re-calibration ({bn})", result.after_bn), (f"after {result.steps} fine-tune steps", result.after)):
        print(f"{label:48s} top-1 {100 * acc.top1:6.2f} %  loss {acc.loss:.4f}")
    print(f"recovery took {result.seconds:.0f} s on {args.device}; evaluated on {result.after.samples} {data_name} test images")
    save_compressed(result.model, load_plan(args.plan), args.model, out)
    print(f"wrote {out}: load it with create_model('file:{out}')")


def _sweep_table(args: argparse.Namespace, model, cfg, *, latency: bool, mix: bool = False, split: str = "test"):
    """``(table, dataset)``: the sensitivity table of ``args``' grid (mixed methods when ``mix``) on a seeded subset of
    ``split``, through the sweep cache."""
    from core.data import eval_subset, load_dataset
    from core.profile.context import torch_threads
    from core.sweep import SweepCache, data_key, sweep

    data_name = args.data or ("" if cfg.dataset == "imagenet" else cfg.dataset)
    if not data_name:
        raise RankscopeError("a sweep measures accuracy: give evaluation data with --data")
    dataset = eval_subset(load_dataset(data_name, cfg, split=split), args.samples, seed=args.seed)
    key = data_key(data_name if split == "test" else f"{data_name}-{split}", args.samples, args.seed)
    cache = None if args.no_cache else SweepCache(key, Path(args.cache_dir))

    def progress(done: int, total: int) -> None:
        print(f"\rswept {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)

    with torch_threads(args.threads):
        table = sweep(model, dataset, layers=args.layers, methods=args.methods, points=args.points, mix=mix, latency=latency,
                      latency_batch=args.latency_batch, cache=cache, progress=progress)
    return table, dataset


def cmd_sweep(args: argparse.Namespace) -> None:
    from core.sweep import write_table

    model, cfg = _load(args)
    table, _ = _sweep_table(args, model, cfg, latency=args.latency)
    write_table(table, args.out)
    print(f"wrote {args.out}: {len(table)} rows ({(table['method'] != 'dense').sum()} points)")


def cmd_allocate(args: argparse.Namespace) -> None:
    from core.plan import save_plan
    from core.profile import example_input
    from core.profile.context import torch_threads
    from core.sweep import layer_methods
    from core.sweep.allocate import NEEDS_TABLE, allocate
    from core.sweep.budget import Problem, Target

    kind, fraction = next((k, v) for k in ("flops", "params", "latency") if (v := getattr(args, f"target_{k}")) is not None)
    model, cfg = _load(args)
    table, layers, data = None, None, None
    if args.allocator in NEEDS_TABLE or kind == "latency":
        # chosen on training images, so that the test split stays for reporting the plan's accuracy
        table, data = _sweep_table(args, model, cfg, latency=kind == "latency", mix=args.allocator == "rankscope", split="train")
    else:
        layers = layer_methods(model, args.layers, args.methods)
    problem = Problem(model, args.model, example_input(cfg, 1), Target(kind, fraction), table, layers,
                      data=data if args.allocator == "rankscope" else None)
    with torch_threads(args.threads):
        result = allocate(args.allocator, problem)
    save_plan(result.plan, args.out)
    print(f"wrote {args.out}: {result.summary()}")


def _add_sweep_args(p: argparse.ArgumentParser) -> None:
    from core.sweep import DEFAULT_FOLDER
    from core.sweep.engine import SWEEP_SAMPLES

    p.add_argument("--layers", nargs="+", help="module paths (default: every layer a data-free method applies to)")
    p.add_argument("--methods", nargs="+", help="data-free methods, each on the layers it applies to (default: one per layer; "
                   "allocate's rankscope allocator adds tucker2's alternatives spatial_svd, tt and svd)")
    p.add_argument("--points", type=_positive("--points"), default=10, help="ranks per layer and method, 1 to full rank")
    p.add_argument("--data", help="evaluation data (default: the model's dataset)")
    p.add_argument("--samples", type=_positive("--samples"), default=SWEEP_SAMPLES,
                   help="images scored per point (sweep: of the test split; allocate: of the training split)")
    p.add_argument("--seed", type=int, default=0, help="seed of the evaluation subset")
    p.add_argument("--threads", type=_threads, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--latency-batch", type=_positive("--latency-batch"), default=1, help="batch of the latency timings")
    p.add_argument("--cache-dir", default=str(DEFAULT_FOLDER), help="sweep cache folder")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the sweep cache")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rankscope", description="Low-rank compression with the price measured.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list the shipped models")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("layers", help="every layer with its shape, parameters, FLOPs share and applicable methods")
    _add_model_args(p)
    p.add_argument("--json", action="store_true", help="print the table as JSON records")
    p.set_defaults(func=cmd_layers)

    p = sub.add_parser("groups", help="channel groups (for resample / prune plan entries) with their capacity estimate")
    _add_model_args(p)
    p.add_argument("--energy", type=_fraction("--energy"), default=0.95,
                   help="share of spectral energy the capacity estimate keeps (default 0.95)")
    p.add_argument("--json", action="store_true", help="print the table as JSON records")
    p.set_defaults(func=cmd_groups)

    p = sub.add_parser("profile", help="parameters, FLOPs, latency, peak memory and accuracy of a model")
    _add_model_args(p)
    p.add_argument("--plan", help="compression plan (YAML or JSON) to apply before profiling")
    p.add_argument("--force", action="store_true", help="apply a plan even if it was made for other weights")
    p.add_argument("--data", help="evaluation data: fashion-mnist, cifar10[:ROOT], cifar100[:ROOT], imagefolder:PATH")
    p.add_argument("--samples", type=_positive("--samples"), default=None, help="evaluation subset size (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the evaluation subset")
    p.add_argument("--batch", type=_positive("--batch"), default=1, help="batch size of the latency and memory runs")
    p.add_argument("--threads", type=_threads, default=None, help="CPU threads (a stand-in for a phone's cores)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--runtime", choices=("torch", "onnxruntime"), default="torch")
    p.add_argument("--json", action="store_true", help="last line printed is one JSON object")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("apply", help="apply a plan and write the compressed model (safetensors + plan)")
    _add_model_args(p)
    p.add_argument("--plan", required=True, help="compression plan (YAML or JSON)")
    p.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    p.add_argument("--data", help="calibration data for data-aware methods (default: the model's dataset)")
    p.add_argument("--force", action="store_true", help="apply even if the plan was made for other weights")
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("plan", help="write a starting plan for every layer a method applies to")
    _add_model_args(p)
    p.add_argument("--method", required=True, help="decomposition method, e.g. svd, tucker2, cp, tt, spatial_svd")
    rule = p.add_mutually_exclusive_group(required=True)
    rule.add_argument("--energy", type=_fraction("--energy"), help="keep this fraction of squared singular values")
    rule.add_argument("--ratio", type=_fraction("--ratio"), help="keep this fraction of each layer's cost (--ratio-of)")
    rule.add_argument("--vbmf", action="store_true", help="ranks from empirical variational Bayesian MF")
    p.add_argument("--ratio-of", choices=("params", "flops"), default="params", help="the cost --ratio refers to")
    p.add_argument("--data", help="calibration data for data-aware methods (default: the model's dataset)")
    p.add_argument("--out", required=True, help="plan file to write (.yaml or .json)")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("train", help="train a shipped model from scratch (writes assets/models/<name>/)")
    p.add_argument("model")
    p.add_argument("--epochs", type=_positive("--epochs"))
    p.add_argument("--steps", type=_positive("--steps"), help="fmnist-resnet-integral: integral fine-tune steps")
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=_threads)
    p.add_argument("--out", help="output folder (default: assets/models/<name>)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("finetune", help="apply a plan, re-calibrate BatchNorm, distill from the original, write the model")
    _add_model_args(p)
    p.add_argument("--plan", required=True, help="compression plan (YAML or JSON)")
    p.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    p.add_argument("--steps", type=_positive("--steps"), help="fine-tune steps (default 1000)")
    p.add_argument("--batch", type=_positive("--batch"), help="training batch size (default 128)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 5e-3)")
    p.add_argument("--data", help="labelled data with a train split (default: the model's dataset)")
    p.add_argument("--samples", type=_positive("--samples"), default=None, help="test images to evaluate on (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the batches, the augmentation and the evaluation subset")
    p.add_argument("--threads", type=_threads, default=None, help="CPU threads")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--force", action="store_true", help="apply even if the plan was made for other weights")
    p.set_defaults(func=cmd_finetune)

    from core.sweep.allocate import ALLOCATORS

    p = sub.add_parser("sweep", help="sensitivity table: accuracy, loss, cost (and latency) of each layer at each rank")
    _add_model_args(p)
    _add_sweep_args(p)
    p.add_argument("--latency", action="store_true", help="also time each layer at each rank")
    p.add_argument("--out", required=True, help="table to write (.csv)")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("allocate", help="choose a rank per layer to meet a parameter, FLOP or latency target")
    _add_model_args(p)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-flops", type=_fraction("--target-flops"), help="keep this fraction of the FLOPs")
    target.add_argument("--target-params", type=_fraction("--target-params"), help="keep this fraction of the parameters")
    target.add_argument("--target-latency", type=_fraction("--target-latency"), help="keep this fraction of the measured latency")
    p.add_argument("--allocator", choices=list(ALLOCATORS), default="rankscope",
                   help="rankscope (knapsack on the sweep), greedy (AIMET), uniform, energy or vbmf")
    _add_sweep_args(p)
    p.add_argument("--out", required=True, help="plan file to write (.yaml or .json)")
    p.set_defaults(func=cmd_allocate)

    from core.bench import add_bench_parser  # noqa: PLC0415 - bench sub-commands live beside their code

    add_bench_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0, or 2 for bad input)."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except RankscopeError as err:
        print(f"rankscope: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    return 0

"""Sub-commands that write plans and compressed models: ``plan``, ``apply`` and ``finetune``."""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from tqdm.auto import tqdm

from core import argtypes
from core.cli.common import add_model_args, compressed, load_model
from core.data import calibration_batch, default_dataset, eval_subset, load_dataset, training_data
from core.decompose.registry import get_method
from core.errors import RankscopeError
from core.plan import load_plan, save_plan
from core.plan.saved import check_new_folder, save_compressed
from core.plan.starting import make_plan
from core.profile.context import torch_threads
from core.recovery import RecoveryConfig, recover


def cmd_apply(args: argparse.Namespace) -> None:
    out = Path(args.out)
    check_new_folder(out)  # before the work, not after
    model, _, _ = compressed(args)
    save_compressed(model, load_plan(args.plan), args.model, out)
    print(f"wrote {args.out}: load it with create_model('file:{args.out}')")


def cmd_plan(args: argparse.Namespace) -> None:
    model, cfg = load_model(args)
    calibration = None
    if get_method(args.method).needs_calibration:
        data_name = default_dataset(cfg, args.data)
        if not data_name:
            raise RankscopeError(f"{args.method} is data-aware: give calibration data with --data")
        calibration = calibration_batch(data_name, cfg)
    plan = make_plan(model, cfg, args.method, energy=args.energy, ratio=args.ratio, vbmf=args.vbmf,
                     kind=args.ratio_of, calibration=calibration)
    save_plan(replace(plan, model=args.model), args.out)
    print(f"wrote {args.out}: {len(plan.layers)} layer(s), {len(plan.skipped)} skipped")
    for path, why in plan.skipped.items():
        print(f"  skipped {path}: {why}")


def cmd_finetune(args: argparse.Namespace) -> None:
    out = Path(args.out)
    check_new_folder(out)  # before minutes of fine-tuning, not after
    config = RecoveryConfig(**{k: v for k, v in {"steps": args.steps, "batch_size": args.batch, "lr": args.lr}.items() if v is not None},
                            seed=args.seed)
    with torch_threads(args.threads):
        original, cfg = load_model(args)
        model, _, data_name = compressed(args, (original, cfg))
        if not data_name:
            raise RankscopeError("fine-tuning needs training data: give it with --data")
        train_data = training_data(data_name, cfg)
        eval_data = eval_subset(load_dataset(data_name, cfg), args.samples, seed=args.seed)
        with tqdm(total=config.steps, unit="step", desc="fine-tune", disable=not config.steps) as bar:
            result = recover(original, model, train_data, eval_data, config, device=args.device,
                             progress=lambda done, total: bar.update(1))
    bn = f"{result.batchnorm_layers} BatchNorm layers" if result.batchnorm_layers else "no BatchNorm layers: skipped"
    for label, scores in (("original", result.original), ("compressed", result.before),
                          (f"after BN re-calibration ({bn})", result.after_bn), (f"after {result.steps} fine-tune steps", result.after)):
        print(f"{label:48s} {scores.text()}")
    print(f"recovery took {result.seconds:.0f} s on {args.device}; evaluated on {result.after.samples} {data_name} test images")
    save_compressed(result.model, load_plan(args.plan), args.model, out)
    print(f"wrote {out}: load it with create_model('file:{out}')")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register this module's sub-commands."""
    p = sub.add_parser("apply", help="apply a plan and write the compressed model (safetensors + plan)")
    add_model_args(p)
    p.add_argument("--plan", required=True, help="compression plan (YAML or JSON)")
    p.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    p.add_argument("--data", help="calibration data for data-aware methods (default: the model's dataset)")
    p.add_argument("--force", action="store_true", help="apply even if the plan was made for other weights")
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("plan", help="write a starting plan for every layer a method applies to")
    add_model_args(p)
    p.add_argument("--method", required=True, help="decomposition method, e.g. svd, tucker2, cp, tt, spatial_svd")
    rule = p.add_mutually_exclusive_group(required=True)
    rule.add_argument("--energy", type=argtypes.fraction("--energy"), help="keep this fraction of squared singular values")
    rule.add_argument("--ratio", type=argtypes.fraction("--ratio"), help="keep this fraction of each layer's cost (--ratio-of)")
    rule.add_argument("--vbmf", action="store_true", help="ranks from empirical variational Bayesian MF")
    p.add_argument("--ratio-of", choices=("params", "flops"), default="params", help="the cost --ratio refers to")
    p.add_argument("--data", help="calibration data for data-aware methods (default: the model's dataset)")
    p.add_argument("--out", required=True, help="plan file to write (.yaml or .json)")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("finetune", help="apply a plan, re-calibrate BatchNorm, distill from the original, write the model")
    add_model_args(p)
    p.add_argument("--plan", required=True, help="compression plan (YAML or JSON)")
    p.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    p.add_argument("--steps", type=argtypes.positive("--steps"), help="fine-tune steps (default 1000)")
    p.add_argument("--batch", type=argtypes.positive("--batch"), help="training batch size (default 128)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 5e-3)")
    p.add_argument("--data", help="evaluation data; training comes from its train split, labels or not (default: the model's dataset)")
    p.add_argument("--samples", type=argtypes.positive("--samples"), default=None, help="test images to evaluate on (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the batches, the augmentation and the evaluation subset")
    p.add_argument("--threads", type=argtypes.threads, default=None, help="CPU threads")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--force", action="store_true", help="apply even if the plan was made for other weights")
    p.set_defaults(func=cmd_finetune)

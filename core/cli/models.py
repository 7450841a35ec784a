"""Sub-commands about a model as it is: ``models``, ``layers``, ``groups``, ``profile`` and ``train``."""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import pandas as pd

from core import argtypes
from core.cli.common import add_model_args, compressed, load_model
from core.data import eval_subset, load_dataset
from core.errors import RankscopeError
from core.layers.table import describe_layers
from core.models import create_model, list_models, shipped_cfg
from core.models.registry import LM_DATASET
from core.paths import ASSETS
from core.profile import example_input, profile_model
from core.resample import capacity
from core.resample.integral import main as integral_main
from core.train import RECIPES, train


def cmd_models(args: argparse.Namespace) -> None:
    for name in list_models():
        cfg = shipped_cfg(name)  # the card is enough: no model is built
        acc, sr, lm = cfg.card.get("test_accuracy"), cfg.card.get("set5_like"), cfg.card.get("shakespeare")
        if acc is not None:
            note = f"test top-1 {acc:.4f}"
        elif sr:  # a super-resolution model: its card's PSNR on its evaluation photos
            note = f"PSNR {sr['psnr']:.2f} dB (bicubic {sr['bicubic_psnr']:.2f})"
        elif lm:  # a language model: its card's perplexity on the evaluation plays
            note = f"perplexity {lm['perplexity']:.2f} ({lm['windows']} windows of {LM_DATASET})"
        else:
            note = "untrained (run `rankscope train`)"
        print(f"{name:23s} {cfg.dataset:17s} input {'x'.join(map(str, cfg.input_size)):8s} {note}")
    print("also: timm:<arch>, torchvision:<arch>, hf:<folder>, file:<path>")


def cmd_layers(args: argparse.Namespace) -> None:
    model, cfg = load_model(args)
    table = describe_layers(model, cfg)
    if args.json:
        print(table.to_json(orient="records"))
        return
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 60):
        shown = table.assign(flops_share=(100 * table["flops_share"]).round(2).astype(str) + " %")
        print(shown.to_string(index=False))


def cmd_groups(args: argparse.Namespace) -> None:
    model, cfg = load_model(args)
    table = capacity(model, example_input(cfg, 1), args.energy)
    if args.json:
        print(table.to_json(orient="records"))
        return
    print(table.assign(recommended_density=table["recommended_density"].round(3)).to_string(index=False))
    print(f"capacity estimate: twice the DCT frequencies holding {args.energy:.0%} of each group's energy, over its channels")


def cmd_profile(args: argparse.Namespace) -> None:
    original, cfg = load_model(args)
    model, _, data_name = compressed(args, (original, cfg))
    if args.reference:  # e.g. a fine-tuned file:DIR judged against the registry model it came from
        original, reference_cfg = create_model(args.reference)
        if reference_cfg.num_classes != cfg.num_classes:
            raise RankscopeError(f"--reference {args.reference} has {reference_cfg.num_classes} outputs, "
                                 f"{args.model} has {cfg.num_classes}: fidelity compares outputs of the same shape")
    dataset = None
    if data_name:  # a library model without a dataset of its own is profiled without accuracy unless --data is given
        dataset = eval_subset(load_dataset(data_name, cfg), args.samples, seed=args.seed)
    result = profile_model(
        model, cfg, dataset=dataset, reference=original, batch=args.batch, threads=args.threads, device=args.device,
        runtime=args.runtime, progress=not args.json,
    )
    if not args.json:
        for key, value in result.to_dict().items():
            print(f"{key:18s} {value}")
    print(json.dumps(result.to_dict()))


def cmd_train(args: argparse.Namespace) -> None:
    if args.model == "fmnist-resnet-integral":  # integral fine-tuning of the shipped fmnist-resnet (core.resample.integral)
        flags = {"--steps": args.steps, "--seed": args.seed, "--threads": args.threads, "--out": args.out}
        print(json.dumps(integral_main([str(x) for k, v in flags.items() if v is not None for x in (k, v)])))
        return
    if args.model not in RECIPES:
        raise RankscopeError(f"no training recipe for {args.model!r}; recipes exist for {', '.join(RECIPES)} "
                             "and fmnist-resnet-integral")
    overrides = {k: v for k, v in {"epochs": args.epochs, "seed": args.seed, "threads": args.threads}.items() if v is not None}
    out = Path(args.out) if args.out else ASSETS / "models" / args.model
    print(json.dumps(train(args.model, replace(RECIPES[args.model], **overrides), out)))


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register this module's sub-commands."""
    p = sub.add_parser("models", help="list the shipped models")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("layers", help="every layer with its shape, parameters, FLOPs share and applicable methods")
    add_model_args(p)
    p.add_argument("--json", action="store_true", help="print the table as JSON records")
    p.set_defaults(func=cmd_layers)

    p = sub.add_parser("groups", help="channel groups (for resample / prune plan entries) with their capacity estimate")
    add_model_args(p)
    p.add_argument("--energy", type=argtypes.fraction("--energy"), default=0.95,
                   help="share of spectral energy the capacity estimate keeps (default 0.95)")
    p.add_argument("--json", action="store_true", help="print the table as JSON records")
    p.set_defaults(func=cmd_groups)

    p = sub.add_parser("profile", help="parameters, FLOPs, latency, peak memory and accuracy of a model")
    add_model_args(p)
    p.add_argument("--plan", help="compression plan (YAML or JSON) to apply before profiling")
    p.add_argument("--force", action="store_true", help="apply a plan even if it was made for other weights")
    p.add_argument("--data", help="evaluation data: fashion-mnist, imagenet-samples, photos[:N], cifar10[:ROOT], cifar100[:ROOT], "
                   "imagefolder:PATH (default: the model's own)")
    p.add_argument("--samples", type=argtypes.positive("--samples"), default=None, help="evaluation subset size (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the evaluation subset")
    p.add_argument("--batch", type=argtypes.positive("--batch"), default=1, help="batch size of the latency and memory runs")
    p.add_argument("--threads", type=argtypes.threads, default=None, help="CPU threads (a stand-in for a phone's cores)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--runtime", choices=("torch", "onnxruntime"), default="torch")
    p.add_argument("--reference", help="the uncompressed model the fidelity keys compare with (default: MODEL before --plan)")
    p.add_argument("--json", action="store_true", help="last line printed is one JSON object")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("train", help="train a shipped model from scratch (writes assets/models/<name>/)")
    p.add_argument("model")
    p.add_argument("--epochs", type=argtypes.positive("--epochs"))
    p.add_argument("--steps", type=argtypes.positive("--steps"), help="fmnist-resnet-integral: integral fine-tune steps")
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=argtypes.threads)
    p.add_argument("--out", help="output folder (default: assets/models/<name>)")
    p.set_defaults(func=cmd_train)

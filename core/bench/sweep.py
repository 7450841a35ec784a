"""``rankscope bench sweep``: the full sensitivity sweep of a model, the engine against the naive way.

On fmnist-resnet's evaluation subset (2,000 images by default), every compressible layer at 10 ranks:

- **engine**: :func:`core.sweep.sweep` without the disk cache (each layer factorized once, its ranks
  sliced; the activations entering the layer computed once and only the rest of the network re-run);
- **naive**: :func:`core.sweep.naive_sweep`, the AIMET / Distiller way (per point: factorization cache
  emptied, a one-layer plan applied to a copy of the model, the whole model evaluated).

Both start with an empty factorization cache after one untimed warm-up point each, run in this process with ``--threads`` and the same batch
size, and must give exactly equal top-1, top-5 and loss at every point (the same operations run on the
same batches in the same order, so the numbers are bit-identical, not merely close); a difference is
an error. The last line printed is ``sweep speedup: <x>x``.
"""
from __future__ import annotations

import argparse
import time

import pandas as pd

from core import argtypes
from core.data import eval_subset, load_dataset
from core.decompose import CACHE
from core.errors import RankscopeError
from core.models import create_model
from core.profile.context import torch_threads
from core.sweep import DENSE, naive_sweep, sweep, sweep_grid

SCORES = ["top1", "top5", "loss"]


def bench_sweep(name: str = "fmnist-resnet", *, samples: int = 2000, points: int = 10, layers: list[str] | None = None,
                threads: int | None = None) -> tuple[pd.DataFrame, float, float]:
    """Sweep ``name`` with the engine and naively; return the per-point table and the two times in seconds.

    Raises
    ------
    RankscopeError
        The two sweeps disagree at some point (the rows are named).
    """
    model, cfg = create_model(name)
    dataset = eval_subset(load_dataset(cfg.dataset, cfg), samples)
    grid = sweep_grid(model, layers, None, points)
    with torch_threads(threads):
        warm = eval_subset(dataset, 8)  # one untimed point each: first-call costs (tracing, kernels) out of the timings
        sweep(model, warm, layers=[grid[-1].layer], points=1)
        naive_sweep(model, warm, grid[-1:])
        CACHE.clear()
        start = time.perf_counter()
        table = sweep(model, dataset, layers=layers, points=points)
        engine_s = time.perf_counter() - start
        CACHE.clear()
        start = time.perf_counter()
        naive = naive_sweep(model, dataset, grid)
        naive_s = time.perf_counter() - start
    points_table = table[table["method"] != DENSE].reset_index(drop=True)
    same = (points_table[SCORES].fillna(-1.0) == naive[SCORES].fillna(-1.0)).all(axis=1)
    if not same.all():
        bad = points_table.loc[~same, ["layer", "method", "rank"]].to_string(index=False)
        raise RankscopeError(f"the engine and the naive sweep disagree at:\n{bad}")
    return points_table, engine_s, naive_s


def run(args: argparse.Namespace) -> None:
    table, engine_s, naive_s = bench_sweep(args.model, samples=args.samples, points=args.points, layers=args.layers,
                                           threads=args.threads)
    per_layer = table.groupby("layer", sort=False).agg(points=("rank", "size"), worst_top1=("top1", "min"))
    print(per_layer.to_string())
    print(f"{len(table)} points, {int(table['samples'].iloc[0])} images: engine {engine_s:.1f} s, naive {naive_s:.1f} s; "
          "top-1, top-5 and loss identical at every point")
    print(f"sweep speedup: {naive_s / engine_s:.1f}x")


def add_parser(kinds: argparse._SubParsersAction) -> None:
    """Register ``bench sweep``."""
    p = kinds.add_parser("sweep", help="full sensitivity sweep: the engine (cached activations) vs the naive way")
    p.add_argument("model", nargs="?", default="fmnist-resnet", help="shipped model (default: fmnist-resnet)")
    p.add_argument("--samples", type=argtypes.positive("--samples"), default=2000, help="evaluation subset size")
    p.add_argument("--points", type=argtypes.positive("--points"), default=10, help="ranks per layer")
    p.add_argument("--layers", nargs="+", help="module paths (default: every compressible layer)")
    p.add_argument("--threads", type=argtypes.threads, default=None, help="CPU threads (default: torch's)")
    p.set_defaults(func=run)

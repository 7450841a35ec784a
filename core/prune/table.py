"""Accuracy and cost of a registered model pruned uniformly at several densities with several scores."""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from core.data import eval_subset, labelled_batch, load_dataset
from core.models import create_model
from core.models.cfg import ModelCfg
from core.profile.accuracy import evaluate
from core.profile.counts import count_flops, count_params
from core.profile.report import example_input
from core.prune.importance import check_score
from core.prune.prune import Batches, prune_model, uniform_densities

if TYPE_CHECKING:
    import pandas as pd

CALIBRATION_BATCHES = 4  # gradient batches for taylor/hessian: 128 images (hessian: 128 per-sample gradients)
CALIBRATION_BATCH_SIZE = 32


def labelled_batches(cfg: ModelCfg, batches: int = CALIBRATION_BATCHES, batch_size: int = CALIBRATION_BATCH_SIZE,
                     seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """:func:`core.data.labelled_batch` of ``cfg.dataset`` cut into ``batches`` batches, for gradient scores."""
    images, labels = labelled_batch(cfg.dataset, cfg, batches * batch_size, seed)
    return [(images[i:i + batch_size], labels[i:i + batch_size]) for i in range(0, len(labels), batch_size)]


def prune_table(name: str, densities: Sequence[float], scores: Sequence[str], samples: int | None = 2000) -> pd.DataFrame:
    """Prune every group of model ``name`` to each density with each score, without fine-tuning, and score it.

    Parameters
    ----------
    name : a registry name (:func:`core.models.create_model`), with its trained weights.
    densities : fractions of channels (heads) kept, applied to every prunable group.
    scores : importance scores (:data:`core.prune.SCORES`).
    samples : test images evaluated (a seeded subset, :func:`core.data.eval_subset`); ``None`` for all.

    Returns
    -------
    pandas.DataFrame
        One row for the unpruned model (``score="none"``, ``density=1.0``) then one per (score, density):
        ``model, score, density, params, flops`` (per sample, 1 multiply-add = 2), ``top1, loss``
        (on the test subset), ``prune_s`` (wall time of :func:`core.prune.prune_model`, gradients
        included) and ``eval_s``.
    """
    import pandas as pd

    for score in scores:
        check_score(score)
    model, cfg = create_model(name)
    example = example_input(cfg)
    test = eval_subset(load_dataset(cfg.dataset, cfg, split="test"), samples)
    data: Batches = labelled_batches(cfg)
    rows = [_row(name, "none", 1.0, model, example, test, 0.0)]
    for score in scores:
        for density in densities:
            start = time.perf_counter()
            pruned, _ = prune_model(model, example, uniform_densities(model, example, density), score=score, data=data)
            rows.append(_row(name, score, density, pruned, example, test, time.perf_counter() - start))
    return pd.DataFrame(rows)


def _row(name: str, score: str, density: float, model: torch.nn.Module, example: torch.Tensor, test, prune_s: float) -> dict:
    start = time.perf_counter()
    result = evaluate(model, test)
    return {
        "model": name, "score": score, "density": density, "params": count_params(model),
        "flops": count_flops(model, example).per_sample, "top1": result.top1, "loss": result.loss,
        "prune_s": prune_s, "eval_s": time.perf_counter() - start,
    }

"""Datasets: ``load_dataset(name, cfg)`` and ``eval_subset(dataset, samples, seed)``."""
from core.data.fashion_mnist import load_fashion_mnist
from core.data.registry import DATASETS, calibration_batch, default_dataset, eval_subset, labelled_batch, load_dataset

__all__ = ["DATASETS", "calibration_batch", "default_dataset", "eval_subset", "labelled_batch", "load_dataset", "load_fashion_mnist"]

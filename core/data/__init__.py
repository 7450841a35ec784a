"""Datasets: ``load_dataset(name, cfg)``, ``eval_subset(dataset, samples, seed)``, and what compression may learn from
(``training_data``, ``labelled_batch``)."""
from core.data.fashion_mnist import load_fashion_mnist
from core.data.registry import (
    DATASETS,
    calibration_batch,
    default_dataset,
    eval_subset,
    labelled_batch,
    load_dataset,
    training_data,
)

__all__ = ["DATASETS", "calibration_batch", "default_dataset", "eval_subset", "labelled_batch", "load_dataset",
           "load_fashion_mnist", "training_data"]

"""Profilers: parameters, FLOPs, latency, peak memory, quality under a task, and ``profile_model`` that runs them all."""
from core.profile.ab import ab_latency
from core.profile.counts import FLOP_CONVENTION, FlopCount, count_flops, count_params, model_size_mb
from core.profile.latency import LatencyResult, measure_latency, measure_layer_latency
from core.profile.memory import MemoryResult, measure_memory
from core.profile.quality import Cancelled, batch_limit, evaluate, evaluate_tasks, has_labels, task_for
from core.profile.onnx_runtime import (
    exported_onnx,
    measure_ort_latency,
    measure_ort_memory,
    ort_run,
    ort_session,
)
from core.profile.report import ProfileResult, example_input, layer_table, profile_model, profile_tasks

__all__ = [
    "FLOP_CONVENTION",
    "Cancelled",
    "FlopCount",
    "LatencyResult",
    "MemoryResult",
    "ProfileResult",
    "ab_latency",
    "batch_limit",
    "count_flops",
    "count_params",
    "evaluate",
    "evaluate_tasks",
    "has_labels",
    "example_input",
    "exported_onnx",
    "layer_table",
    "measure_latency",
    "measure_layer_latency",
    "measure_memory",
    "measure_ort_latency",
    "measure_ort_memory",
    "model_size_mb",
    "ort_run",
    "ort_session",
    "profile_model",
    "profile_tasks",
    "task_for",
]

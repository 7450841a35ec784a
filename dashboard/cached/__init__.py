"""The cached calls into ``core`` that the pages share, one module per concern; every name is re-exported here,
so a page writes ``cached.scores(...)``.

- :mod:`.models`: the model, its data, its :class:`core.evaluate.PlanEvaluator`, its profile and layer tables;
- :mod:`.plans`: a whole plan's scores, built model and costs, keyed by the :class:`core.plan.Plan` itself;
- :mod:`.layer_study`: one layer rebuilt at a rank, its latency, spectra and output error;
- :mod:`.sweeps`: sensitivity sweeps (exact, proxy, hybrid) through the on-disk sweep cache, and allocators filling a plan from them;
- :mod:`.channel_groups`: channel groups' capacity estimates and spectra;
- :mod:`.images`: a super-resolution model's set5-like photos upscaled, dense and by a plan, and crops compared;
- :mod:`.text`: a language model's and a plan's compressed model's greedy continuations of a prompt, scored by both.

Resources (``st.cache_resource``) are shared, not copied: models, datasets, evaluators, built layers. Data
(``st.cache_data``) is cached by value: tables, profiles, scores, counts.
"""
from dashboard.cached.channel_groups import capacities, group_spectrum
from dashboard.cached.images import bicubic, comparison, sr_photos, uniform_plan, upscaled
from dashboard.cached.layer_study import error_curve, layer_error, layer_latency, probe_inputs, replacement, spectra
from dashboard.cached.models import (
    FALLBACK_DATA,
    baseline_counts,
    calibration_data,
    calibration_images,
    calibration_labelled,
    compressible,
    data_name,
    eval_data,
    is_fallback,
    layer_latencies,
    layers,
    model_and_cfg,
    plan_evaluator,
    profile,
    sites,
    test_set,
    weights_digest,
)
from dashboard.cached.plans import (
    plan_totals,
    planned_costs,
    planned_counts,
    planned_latency,
    planned_memory,
    planned_model,
    scores,
)
from dashboard.cached.sweeps import (RUN_ON, allocation, exact_rows, executor, layer_times, needs_sweep, run_hybrid,
                                     run_proxy, run_sweep, swept)
from dashboard.cached.text import continuations, prompt_length, tokenizer_folder

__all__ = [
    "FALLBACK_DATA",
    "RUN_ON",
    "allocation",
    "baseline_counts",
    "bicubic",
    "calibration_data",
    "calibration_images",
    "calibration_labelled",
    "capacities",
    "comparison",
    "compressible",
    "continuations",
    "data_name",
    "error_curve",
    "exact_rows",
    "executor",
    "eval_data",
    "group_spectrum",
    "is_fallback",
    "layer_error",
    "layer_latencies",
    "layer_latency",
    "layers",
    "model_and_cfg",
    "layer_times",
    "needs_sweep",
    "plan_evaluator",
    "plan_totals",
    "planned_costs",
    "planned_counts",
    "planned_latency",
    "planned_memory",
    "planned_model",
    "probe_inputs",
    "profile",
    "prompt_length",
    "replacement",
    "run_hybrid",
    "run_proxy",
    "run_sweep",
    "scores",
    "sites",
    "spectra",
    "sr_photos",
    "swept",
    "test_set",
    "tokenizer_folder",
    "uniform_plan",
    "upscaled",
    "weights_digest",
]

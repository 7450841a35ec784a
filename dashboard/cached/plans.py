"""Cached calls about whole plans, keyed by the :class:`core.plan.Plan` itself (frozen and hashable:
``st.cache_data`` hashes it by value): its scores, its built model and what that model costs.

How a plan is scored and built is :class:`core.evaluate.PlanEvaluator`'s decision (cached activations
where exact, the whole built model otherwise); these functions only cache its answers. Each takes the
evaluator's key first — model name, ``arch``, data, samples, device (``Choice.evaluation``).
"""
from __future__ import annotations

import streamlit as st
from torch import nn

from core.plan import Plan
from core.plan.cost import PlanCost, whole_plan_cost
from core.profile import count_flops, count_params, example_input, measure_latency, measure_memory
from core.profile.context import torch_threads
from core.task import Scores
from dashboard.cached.models import baseline_counts, model_and_cfg, plan_evaluator, sites

@st.cache_data(show_spinner="Scoring the model…", max_entries=64)
def scores(name: str, arch: str, data: str, samples: int, device: str, threads: int, plan: Plan) -> tuple[Scores, ...]:
    """``PlanEvaluator.evaluate(plan)`` under the evaluation data's task, then, where that task is not a fidelity
    task already (labelled data, HR images), under its fidelity task (``Task.fidelity``: agreement with the dense
    model's classes, PSNR to its images) on the same inputs: what a user without labels reads, shown next to the
    labelled scores."""
    evaluators = [plan_evaluator(name, arch, data, samples, device)]
    fidelity = evaluators[0].task.fidelity
    if evaluators[0].task.name != fidelity:
        evaluators.append(plan_evaluator(name, arch, data, samples, device, fidelity))
    with torch_threads(threads):
        return tuple(ev.evaluate(plan) for ev in evaluators)


def planned_model(name: str, arch: str, data: str, samples: int, device: str, plan: Plan) -> nn.Module:
    """The model with the whole plan applied: ``PlanEvaluator.model_for(plan)`` (cached by plan there).

    Raises ``RankscopeError`` for a plan that does not fit.
    """
    return plan_evaluator(name, arch, data, samples, device).model_for(plan)


@st.cache_data(show_spinner="Counting…", max_entries=64)
def planned_counts(name: str, arch: str, data: str, samples: int, device: str, plan: Plan) -> dict:
    """Parameters and FLOPs per sample of :func:`planned_model`, counted on the built model."""
    model, cfg = planned_model(name, arch, data, samples, device, plan), model_and_cfg(name, arch)[1]
    return {"params": count_params(model), "flops": int(count_flops(model, example_input(cfg, 1)).per_sample)}


@st.cache_data(show_spinner="Timing the model…", max_entries=64)
def planned_latency(name: str, arch: str, data: str, samples: int, device: str, plan: Plan, batch: int, threads: int) -> float:
    """Median latency (ms) of :func:`planned_model` at ``batch`` (the dense model for an empty plan)."""
    model, cfg = planned_model(name, arch, data, samples, device, plan), model_and_cfg(name, arch)[1]
    return measure_latency(model, example_input(cfg, batch), threads=threads, device=device).median_ms


@st.cache_data(show_spinner="Measuring peak memory (a fresh process)…", max_entries=64)
def planned_memory(name: str, arch: str, data: str, samples: int, device: str, plan: Plan, batch: int, threads: int) -> float:
    """Peak memory (MB) of one forward pass of :func:`planned_model` (``core.profile.measure_memory``)."""
    model, cfg = planned_model(name, arch, data, samples, device, plan), model_and_cfg(name, arch)[1]
    return measure_memory(model, example_input(cfg, batch), threads=threads, device=device).peak_mb


def plan_totals(name: str, arch: str, data: str, samples: int, device: str, plan: Plan) -> PlanCost:
    """``core.plan.cost.whole_plan_cost`` of ``plan`` (raises ``RankscopeError`` where the plan cannot be built)."""
    model, cfg = model_and_cfg(name, arch)
    base = baseline_counts(name, arch)
    return whole_plan_cost(model, plan, sites(name, arch), base["params"], base["flops"],
                           lambda: planned_model(name, arch, data, samples, device, plan), example_input(cfg, 1))


def planned_costs(name: str, arch: str, data: str, samples: int, device: str, plan: Plan, batch: int, threads: int) -> dict:
    """``{"latency_ms", "peak_memory_mb"}`` of :func:`planned_model` at ``batch``: :func:`planned_latency` and
    :func:`planned_memory`."""
    return {"latency_ms": planned_latency(name, arch, data, samples, device, plan, batch, threads),
            "peak_memory_mb": planned_memory(name, arch, data, samples, device, plan, batch, threads)}

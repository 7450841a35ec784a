"""Scoring compressed models: :class:`PlanEvaluator` scores any plan, from the cached activations of
:class:`LayerEvaluator` where that is exact and on the whole built model otherwise; :func:`greedy_continuations`
puts a compressed language model's greedy continuation of a prompt next to its dense model's."""
from core.evaluate.cached import INTERACTIVE_SAMPLES, LayerEvaluator, split_model, swapped_copy
from core.evaluate.continuations import Continuations, greedy_continuations
from core.evaluate.plans import PlanEvaluator

__all__ = ["INTERACTIVE_SAMPLES", "Continuations", "LayerEvaluator", "PlanEvaluator", "greedy_continuations",
           "split_model", "swapped_copy"]

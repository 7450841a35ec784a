"""Scoring compressed models: :class:`PlanEvaluator` scores any plan, from the cached activations of
:class:`LayerEvaluator` where that is exact and on the whole built model otherwise."""
from core.evaluate.cached import INTERACTIVE_SAMPLES, LayerEvaluator, split_model, swapped_copy
from core.evaluate.plans import PlanEvaluator

__all__ = ["INTERACTIVE_SAMPLES", "LayerEvaluator", "PlanEvaluator", "split_model", "swapped_copy"]

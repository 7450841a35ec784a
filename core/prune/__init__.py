"""Structured pruning baselines through Torch-Pruning: named channel groups, importance scores, pruning."""
from core.prune.groups import GroupInfo, prunable_groups
from core.prune.importance import SCORES, make_importance, needs_gradients, score_gradients
from core.prune.latency_aware import Allocation, allocate_latency_aware
from core.prune.prune import GroupChange, PruneReport, prune_model, uniform_densities

__all__ = [
    "SCORES", "Allocation", "GroupChange", "GroupInfo", "PruneReport", "allocate_latency_aware",
    "make_importance", "needs_gradients", "prunable_groups", "prune_model",
    "score_gradients", "uniform_densities",
]

"""Structured pruning baselines through Torch-Pruning: named channel groups, importance scores, pruning, a table."""
from core.prune.groups import GroupInfo, prunable_groups
from core.prune.importance import SCORES, make_importance, needs_gradients, score_gradients
from core.prune.latency_aware import Allocation, allocate_latency_aware
from core.prune.prune import GroupChange, PruneReport, kept_units, prune_model, uniform_densities
from core.prune.table import labelled_batches, prune_table

__all__ = [
    "SCORES", "Allocation", "GroupChange", "GroupInfo", "PruneReport", "allocate_latency_aware", "kept_units",
    "labelled_batches", "make_importance", "needs_gradients", "prunable_groups", "prune_model", "prune_table",
    "score_gradients", "uniform_densities",
]

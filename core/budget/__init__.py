"""A budget in, a compressed model out: :func:`compress_to_budget`, the one call the CLI, the Plan page and the
benches make for a data-aware plan."""
from core.budget.compress import (
    ALLOCATION_SAMPLES,
    CALIBRATION,
    RECONSTRUCT_STEPS,
    Budgeted,
    compress_to_budget,
    fisher_data,
    posttrain_settings,
)

__all__ = ["ALLOCATION_SAMPLES", "CALIBRATION", "RECONSTRUCT_STEPS", "Budgeted", "compress_to_budget", "fisher_data", "posttrain_settings"]

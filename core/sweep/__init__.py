"""Sensitivity sweeps (one layer changed at a time), their on-disk cache, and rank allocators built on them."""
from core.sweep.cache import DEFAULT_FOLDER, SweepCache, data_key
from core.sweep.engine import layer_methods, sweep, sweep_grid
from core.sweep.naive import naive_sweep
from core.sweep.table import COLUMNS, DENSE, MODEL, Point, PointKey, read_table, write_table
from core.sweep.budget import Allocation, Problem, Target
from core.sweep.allocate import ALLOCATORS, allocate

__all__ = [
    "ALLOCATORS",
    "Allocation",
    "COLUMNS",
    "DEFAULT_FOLDER",
    "DENSE",
    "MODEL",
    "Point",
    "PointKey",
    "Problem",
    "SweepCache",
    "Target",
    "allocate",
    "data_key",
    "layer_methods",
    "naive_sweep",
    "read_table",
    "sweep",
    "sweep_grid",
    "write_table",
]

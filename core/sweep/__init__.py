"""Sensitivity sweeps (one layer changed at a time), proxies that predict them from one pass, their on-disk cache,
and rank allocators built on them."""
from core.sweep.cache import DEFAULT_FOLDER, SweepCache, data_key
from core.sweep.distributed import RayExecutor
from core.sweep.engine import EXECUTORS, Executor, InProcess, layer_methods, sweep, sweep_grid
from core.sweep.naive import naive_sweep
from core.sweep.table import COLUMNS, DENSE, MODEL, Point, PointKey, read_table, write_table
from core.sweep.budget import Allocation, Problem, Target
from core.sweep.allocate import ALLOCATORS, allocate
from core.sweep.proxies import PROXIES, proxy_grid, proxy_table
from core.sweep.agreement import Agreement, agreement

__all__ = [
    "ALLOCATORS",
    "Agreement",
    "Allocation",
    "COLUMNS",
    "DEFAULT_FOLDER",
    "DENSE",
    "EXECUTORS",
    "Executor",
    "InProcess",
    "MODEL",
    "PROXIES",
    "Point",
    "PointKey",
    "Problem",
    "RayExecutor",
    "SweepCache",
    "Target",
    "agreement",
    "allocate",
    "data_key",
    "layer_methods",
    "naive_sweep",
    "proxy_grid",
    "proxy_table",
    "read_table",
    "sweep",
    "sweep_grid",
    "write_table",
]

"""What the Ray executor costs against the in-process one on the same sweep (for ``rankscope bench``)."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from torch import nn

from core.errors import RankscopeError
from core.profile.context import torch_threads
from core.sweep.distributed import RayExecutor, import_ray
from core.sweep.engine import sweep
from core.sweep.table import DENSE


@dataclass(frozen=True)
class RayOverhead:
    """Wall seconds of one sweep in process and on a local Ray instance (already started and warm), same table."""

    points: int  # the grid's points (the sweep also computes the model row and one dense row per layer)
    rows: int  # all rows computed
    local_s: float
    ray_s: float
    startup_s: float  # starting the local instance and its untimed first sweep, not in ray_s
    cpus: int
    threads: int

    @property
    def per_point_s(self) -> float:
        """``(ray_s - local_s) / points``: negative when the workers' parallelism more than pays for the transfers."""
        return (self.ray_s - self.local_s) / self.points

    def summary(self) -> str:
        """One line: both walls and the overhead per point."""
        return (f"{self.points} points ({self.rows} rows): in process {self.local_s:.2f} s, Ray ({self.cpus} CPUs, {self.threads} thread(s) "
                f"a task) {self.ray_s:.2f} s, {self.per_point_s * 1e3:+.1f} ms a point (starting Ray and its untimed first sweep: {self.startup_s:.1f} s)")


def _timed(run: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = run()
    return out, time.perf_counter() - start


def ray_overhead(model: nn.Module, dataset: Any, *, cpus: Sequence[int] = (2,), threads: int = 1,
                 **grid: Any) -> list[RayOverhead]:
    """Time :func:`core.sweep.sweep` of ``grid`` (its keyword arguments, no cache) in process, then with
    :class:`~core.sweep.distributed.RayExecutor` on a local Ray instance of each of ``cpus`` CPUs, all with
    ``threads`` torch threads. Each is timed on its second run of the sweep: the first, untimed, pays the first
    calls of every kernel shape of the grid and fills the process's factorization cache (in each Ray worker, for
    the layers it was given) and, on Ray, starts the instance. Ray is stopped after each.

    Raises
    ------
    RankscopeError
        A Ray table differs from the in-process one (they must be equal bit for bit); Ray is not installed or
        already initialised here.
    """
    ray = import_ray()
    if ray.is_initialized():
        raise RankscopeError("ray_overhead starts its own local Ray instance: call it with Ray not initialised")
    found = []
    with torch_threads(threads):
        sweep(model, dataset, **grid)  # first-call costs of the in-process path, untimed
        local, local_s = _timed(lambda: sweep(model, dataset, **grid))
        points = int((local["method"] != DENSE).sum())
        if points == 0:
            raise RankscopeError("the sweep has no point to time")
        for n in cpus:
            start = time.perf_counter()
            ray.init(num_cpus=n, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
            try:
                executor = RayExecutor()
                sweep(model, dataset, executor=executor, **grid)  # the workers import torch and call every kernel once
                startup_s = time.perf_counter() - start
                remote, ray_s = _timed(lambda: sweep(model, dataset, executor=executor, **grid))
            finally:
                ray.shutdown()
            try:
                pd.testing.assert_frame_equal(remote, local, check_exact=True)
            except AssertionError:
                raise RankscopeError(f"the Ray executor's table on {n} CPUs differs from the in-process one") from None
            found.append(RayOverhead(points, len(local), local_s, ray_s, startup_s, n, threads))
    return found

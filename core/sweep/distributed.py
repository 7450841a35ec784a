"""The sweep's groups on a Ray cluster: one task per group, the rows streamed back as the tasks finish.

The model and the evaluation data are put into Ray's object store once (``ray.put``); a worker reads them and
builds the sweep's measurer with the driver's torch thread count (so its rows are bit for bit those of
:class:`core.sweep.engine.InProcess`) on its first task of the sweep, keeps it for its next ones, and each task
returns its group's rows. The driver waits on the tasks
with ``ray.wait`` and hands each group's rows to the sweep, which merges them into its table and its disk
cache by :class:`~core.sweep.table.PointKey` as they arrive. A task whose worker dies (killed, out of
memory, its node lost) is run again by Ray, up to ``retries`` times; the rows of a group arrive once,
from the run that finished, so no point is lost or counted twice.

Ray is an optional dependency (``pip install 'rankscope[ray]'``), imported here only, when a sweep runs.
Every node of a cluster needs rankscope installed: a task imports :mod:`core.sweep.engine` to score.
"""
from __future__ import annotations

import importlib.util
import logging
import socket
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from core.errors import RankscopeError
from core.profile import Cancelled

INSTALL = "pip install 'rankscope[ray]'"
CONNECT_TIMEOUT_S = 5.0  # how long a cluster address may take to answer before the sweep gives up
WAIT_S = 0.5  # how often the driver looks at ``cancel`` while tasks run


def import_ray() -> Any:
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RankscopeError(f"the Ray executor needs ray, which is not installed: {INSTALL}") from None
    return ray


def host_port(address: str) -> tuple[str, int]:
    """``(host, port)`` of a Ray address ``HOST:PORT`` (``ray://`` allowed; an empty host is this machine)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise RankscopeError(f"Ray address {address!r} must be 'auto' or HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise a one-line :class:`~core.errors.RankscopeError` unless ``address`` (see :func:`host_port`) accepts a
    TCP connection within ``timeout`` seconds; ``ray.init`` itself would retry for a minute."""
    try:
        socket.create_connection(host_port(address), timeout=timeout).close()
    except OSError as err:
        raise RankscopeError(f"cannot reach the Ray cluster at {address}: {err.strerror or err}") from None


_MEASURER: dict[tuple[str, str], Any] = {}  # in a worker process: the measurer of the sweep it last scored for


def score_groups(job: Any, refs: Sequence[Any], groups: Sequence[Any]) -> list[list[dict]]:
    """The body of a Ray task: ``groups``' rows, scored in this worker with ``job.threads`` torch threads.

    ``job`` is a :class:`core.sweep.engine.SweepJob` and ``groups`` its :class:`~core.sweep.engine.Group` s (not
    imported here: the engine imports this module). ``refs`` holds the object-store references of the model and
    the data, passed inside a list so that Ray does not fetch them for every task: a worker fetches them, and
    builds the measurer (the evaluation batches, the cached activations of the layers it scored), once per sweep
    and keeps it for the sweep's next tasks, as :class:`core.sweep.engine.InProcess` keeps one for all.
    """
    torch.set_num_threads(job.threads)  # a worker is reused across sweeps: set for every task
    key = (refs[0].hex(), refs[1].hex())
    if key not in _MEASURER:
        _MEASURER.clear()  # one sweep's at a time: a worker's memory holds no finished sweep
        _MEASURER[key] = job.measurer(*import_ray().get(list(refs)))
    return [job.score(_MEASURER[key], group) for group in groups]


class RayExecutor:
    """Computes a sweep's groups as Ray tasks (see the module docstring).

    Parameters
    ----------
    address : ``None``: a local Ray instance started for the sweep (and stopped after it) with ``cpus`` CPUs;
        ``"auto"``: the cluster this machine belongs to (``ray start``); ``"HOST:PORT"``: the cluster whose head
        listens there (checked to answer within :data:`CONNECT_TIMEOUT_S`). When Ray is already initialised in
        this process, that instance is used as it is.
    cpus : CPUs of the local instance (``address=None`` only; default all of this machine's).
    retries : how many times a task whose worker died is run again (Ray's ``max_retries``).
    cpus_per_task : CPUs Ray reserves for each task; default the driver's torch thread count (what a task uses),
        at most the CPUs of the largest node. So ``cpus=2`` with one torch thread runs two tasks at a time.

    Raises
    ------
    RankscopeError
        Ray is not installed, an address that is not ``auto`` or ``HOST:PORT`` (said on construction, before any work).
    """

    def __init__(self, address: str | None = None, *, cpus: int | None = None, retries: int = 3,
                 cpus_per_task: float | None = None) -> None:
        if importlib.util.find_spec("ray") is None:
            raise RankscopeError(f"the Ray executor needs ray, which is not installed: {INSTALL}")
        if (cpus is not None and cpus < 1) or retries < 0 or (cpus_per_task is not None and cpus_per_task <= 0):
            raise RankscopeError(f"cpus must be at least 1, retries at least 0 and cpus_per_task positive, "
                                 f"got {cpus}, {retries}, {cpus_per_task}")
        if address not in (None, "auto"):
            host_port(address)
        self.address, self.cpus, self.retries, self.cpus_per_task = address, cpus, retries, cpus_per_task

    def connect(self) -> bool:
        """Initialise Ray for this executor's address unless it already is; whether this call initialised it.

        Raises
        ------
        RankscopeError
            An address that does not answer within a few seconds, no running cluster for ``"auto"``.
        """
        ray = import_ray()
        if self.address not in (None, "auto"):
            check_reachable(self.address)  # first: an address given must answer, whatever Ray this process runs
        if ray.is_initialized():
            return False
        options: dict[str, Any] = {"num_cpus": self.cpus} if self.address is None else {}
        try:
            ray.init(address=self.address, include_dashboard=False, logging_level=logging.ERROR,
                     log_to_driver=False, **options)
        except (ConnectionError, RuntimeError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise RankscopeError(f"cannot join the Ray cluster at {self.address or 'a new local instance'}: {first}") from None
        return True

    def run(self, job: Any, model: nn.Module, dataset: Any, groups: Sequence[Any],
            on_rows: Callable[[list[dict]], None], cancel: Callable[[], bool] | None = None) -> None:
        """One Ray task per group; ``on_rows`` with each group's rows as its task finishes (see
        :class:`core.sweep.engine.Executor`). ``cancel`` is looked at every half second; ``True`` cancels the tasks.

        Raises
        ------
        RankscopeError
            Ray out of reach (nothing computed then), a task whose worker died more than ``retries`` times.
        Cancelled
            ``cancel()`` returned ``True``.
        """
        if cancel is not None and cancel():  # before starting or joining anything
            raise Cancelled("sweep cancelled")
        ray = import_ray()
        started = self.connect()
        try:
            largest = max((n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n["Alive"]), default=1.0)
            per_task = self.cpus_per_task or min(float(job.threads), largest)
            task = ray.remote(score_groups).options(max_retries=self.retries, num_cpus=per_task)
            refs = [ray.put(model), ray.put(dataset)]
            pending = {task.remote(job, refs, [group]): group for group in groups}
            try:
                while pending:
                    if cancel is not None and cancel():
                        raise Cancelled("sweep cancelled")
                    ready, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_S)
                    for ref in ready:
                        group = pending.pop(ref)
                        for rows in self._result(ray, ref, group):
                            on_rows(rows)
            finally:
                for ref in pending:
                    ray.cancel(ref, force=True)
        finally:
            if started:
                ray.shutdown()

    def _result(self, ray: Any, ref: Any, group: Any) -> list[list[dict]]:
        """The rows of a finished task; its error re-raised as the task's own (a one-line one when a worker died)."""
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as err:
            if err.cause is None:
                raise
            raise err.cause from None
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError) as err:
            name = group.layer or "the model and dense rows"
            raise RankscopeError(f"the Ray task of {name} failed {self.retries + 1} times: {type(err).__name__}") from None


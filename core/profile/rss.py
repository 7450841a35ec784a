"""Peak resident memory of a fresh child process: the honest way to measure CPU inference memory.

A parent process has already touched memory for other work, and its peak RSS never goes down, so the
measurement runs in a child started with ``spawn``. Inside the child, :func:`probe_peak` records the
RSS before the model is loaded and after, resets the kernel's peak-RSS counter, runs the forward pass
and reads the peak back.

The peak is reset by writing ``5`` to ``/proc/self/clear_refs`` (Linux 4.0+) and read from ``VmHWM`` in
``/proc/self/status``. Where that is not possible the peak is ``ru_maxrss`` over the child's whole
life, so a load that peaks higher than the forward pass makes the result an upper bound;
:class:`ChildPeak` says which was used in ``peak_was_reset``.
"""
from __future__ import annotations

import gc
import importlib
import multiprocessing
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, TypeVar

import psutil

from core.errors import RankscopeError

T = TypeVar("T")
MB = 1e6


class ChildLoadError(RuntimeError):
    """The child could not load what it was sent (e.g. a model class it cannot import); the parent may fall back."""


@dataclass(frozen=True)
class ChildPeak:
    """RSS readings of one child process, in MB (10^6 bytes).

    Attributes
    ----------
    before_mb : RSS with the libraries imported, before the model was loaded.
    loaded_mb : RSS with the model and its input loaded, just before the forward pass.
    peak_mb : peak RSS during the forward pass (whole process).
    peak_was_reset : ``True`` if the peak counter was reset before the forward pass, so ``peak_mb`` is
        that pass's peak; ``False`` if it is the peak over the child's life (an upper bound).
    """

    before_mb: float
    loaded_mb: float
    peak_mb: float
    peak_was_reset: bool

    @property
    def forward_mb(self) -> float:
        """Growth during the forward pass: activations and workspace."""
        return max(0.0, self.peak_mb - self.loaded_mb)

    @property
    def inference_mb(self) -> float:
        """Peak above the process before loading: model, input, activations and workspace."""
        return max(0.0, self.peak_mb - self.before_mb)


def current_rss_mb() -> float:
    """This process's resident set size now."""
    return psutil.Process().memory_info().rss / MB


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter of this process; ``False`` where the platform does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak RSS of this process since start or since the last :func:`reset_peak_rss`."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / MB  # reported in kB
    except OSError:
        pass
    import resource  # Unix only; reached where /proc is missing (macOS)

    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, kB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / MB


def probe_peak(load: Callable[[], T], run: Callable[[T], object], imports: Sequence[str] = ()) -> ChildPeak:
    """Measure ``run(load())`` in this process; call it inside a fresh child (see :func:`run_in_child`).

    ``imports`` are modules ``load`` will need (e.g. where the model's classes live): they are imported
    before the first reading, so their code is not counted as the model's memory.

    Raises
    ------
    ChildLoadError
        An import or ``load`` failed.
    """
    try:
        for name in imports:
            importlib.import_module(name)
        gc.collect()
        before = current_rss_mb()
        state = load()
    except Exception as err:
        raise ChildLoadError(f"{type(err).__name__}: {err}") from None  # the cause may not pickle back to the parent
    gc.collect()
    loaded = current_rss_mb()
    was_reset = reset_peak_rss()
    run(state)
    return ChildPeak(before, loaded, max(peak_rss_mb(), loaded), was_reset)


def run_in_child(fn: Callable[..., Any], *args: Any) -> Any:
    """Return ``fn(*args)`` computed in a fresh ``spawn`` child process; ``fn`` must be importable by name.

    Exceptions raised by ``fn`` are raised here.

    Raises
    ------
    RankscopeError
        The child died (for instance killed for lack of memory).
    """
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(fn, *args).result()
        except BrokenProcessPool as err:
            raise RankscopeError("the child process measuring memory died (out of memory?)") from err

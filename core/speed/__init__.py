"""Speed as it is measured: per-layer latencies of dense and factorized layers on a runtime, cached per machine.

:class:`LayerTimes` times a layer as built by a method at a rank on the input it receives in the model,
and the dense layer and whole model beside it, on ``torch`` (eager) or ``onnxruntime``, at a batch and
thread count; results are kept on disk under the machine's :func:`fingerprint`, so a layer shape is
timed once per machine. Allocators price latency targets with it (:mod:`core.sweep.budget`).
"""
from core.speed.layer_times import DEFAULT_FOLDER, LayerTimes, Timer
from core.speed.machine import fingerprint

__all__ = ["DEFAULT_FOLDER", "LayerTimes", "Timer", "fingerprint"]

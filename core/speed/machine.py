"""Which machine and runtime a timing belongs to: a short fingerprint of the CPU and the library versions."""
from __future__ import annotations

import hashlib
import os
import platform
from functools import cache
from pathlib import Path

import torch


@cache
def cpu_name() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``platform.processor()`` where there is none)."""
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def fingerprint() -> str:
    """Twelve hex digits naming this CPU model, its core count and the torch and ONNX Runtime versions.

    Two machines with the same fingerprint are expected to time a layer alike; a library upgrade gives
    a new one, since kernels change between versions.
    """
    try:
        from importlib.metadata import version

        ort = version("onnxruntime")
    except Exception:  # not installed: timings under onnxruntime cannot exist either
        ort = "none"
    text = "|".join([cpu_name(), str(os.cpu_count()), platform.machine(), torch.__version__, ort])
    return hashlib.sha256(text.encode()).hexdigest()[:12]

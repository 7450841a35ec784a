"""One evaluator that scores any plan, choosing how: from cached activations where that is exact, else on the
whole model built by :func:`core.plan.compress`.

A plan of decomposition entries only changes its modules one for one, so each module is rebuilt alone (from
the cached factorization) and swapped in, and :class:`~core.evaluate.cached.LayerEvaluator` runs only the
network after the first changed module, on cached activations — the same numbers as the full forward
pass. Attention variants and channel-group entries change the model's structure around a module (sequence
handling, the channel counts of neighbours), so such plans are built whole and run whole.

Plans are hashable, so the built modules and models are cached by entry and by plan.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import torch
from torch import nn

from core.errors import RankscopeError
from core.evaluate.cached import LayerEvaluator, Progress
from core.layers import layer_input
from core.models.cfg import ModelCfg
from core.plan import LayerEntry, Plan, compress
from core.plan.apply import Batch
from core.plan.kinds import MODULE_KINDS
from core.profile import evaluate
from core.task import Scores, Task


class _Bounded(OrderedDict):
    """A least-recently-used map of at most ``size`` items, safe to share between threads (dashboard sessions)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.lock = threading.RLock()

    def get_or_make(self, key: Hashable, make: Callable[[], Any]) -> Any:
        with self.lock:
            if key in self:
                self.move_to_end(key)
                return self[key]
            value = self[key] = make()
            while len(self) > self.size:
                self.popitem(last=False)
            return value


class PlanEvaluator:
    """Scores plans of one model on one evaluation set.

    Parameters
    ----------
    model, cfg : the dense model (only read) and its metadata.
    dataset : ``(input, label)`` items to score on (label ``-1`` where there is none).
    task : how to score (default: classification for labelled data, fidelity to ``model`` otherwise).
    data : calibration inputs and labels, for data-aware layers and gradient-based pruning scores
        (``None``: plans that need them raise :class:`~core.errors.RankscopeError`).
    device : ``"cpu"`` or ``"cuda[:N]"``.
    batch_size : examples per forward pass.
    """

    def __init__(self, model: nn.Module, cfg: ModelCfg, dataset: Any, *, task: str | Task | None = None,
                 data: Batch | None = None, device: str | torch.device = "cpu", batch_size: int = 256) -> None:
        self.model, self.cfg, self.dataset, self.data, self.device = model, cfg, dataset, data, device
        self.cached = LayerEvaluator(model, dataset, task=task, batch_size=batch_size, device=device)
        self.task = self.cached.task
        self._modules = _Bounded(256)
        self._models = _Bounded(16)

    @property
    def samples(self) -> int:
        """Examples scored per evaluation."""
        return self.cached.samples

    @staticmethod
    def is_exact_from_cache(plan: Plan) -> bool:
        """Whether ``plan`` can be scored from cached activations: decomposition entries only, built alone (no
        post-training steps, which change layers after and around them)."""
        steps = plan.posttrain is not None and plan.posttrain.active
        return not plan.groups and not steps and all(e.kind == "decomposition" for e in plan.layers.values())

    def module(self, path: str, entry: LayerEntry) -> nn.Module:
        """The module at ``path`` rebuilt as a decomposition ``entry`` says (cached by path and entry)."""
        return self._modules.get_or_make((path, entry), lambda: self._build_module(path, entry))

    def _build_module(self, path: str, entry: LayerEntry) -> nn.Module:
        kind = MODULE_KINDS[entry.kind]
        inputs = None
        if kind.needs_calibration(entry):
            if self.data is None:
                raise RankscopeError(f"{entry.method} is data-aware: it needs calibration data (a dataset for the model)")
            inputs = layer_input(self.model, path, self.data[0])
        return kind.build(self.model.get_submodule(path), entry, inputs).eval()

    def model_for(self, plan: Plan) -> nn.Module:
        """The whole model with ``plan`` applied by :func:`core.plan.compress` (cached by plan)."""
        return self._models.get_or_make(plan, lambda: compress(self.model, self.cfg, plan, data=self.data, force=True)[0])

    def evaluate(self, plan: Plan, *, progress: Progress | None = None,
                 cancel: Callable[[], bool] | None = None) -> Scores:
        """Score the model with ``plan`` applied; the dense model for an empty plan.

        Raises
        ------
        RankscopeError
            The plan does not fit the model, or needs calibration data the evaluator was not given.
        Cancelled
            ``cancel()`` returned ``True``.
        """
        if self.is_exact_from_cache(plan):
            swapped = {path: self.module(path, entry) for path, entry in plan.layers.items()}
            return self.cached.evaluate(swapped, progress=progress, cancel=cancel)
        return evaluate(self.model_for(plan), self.dataset, task=self.task, reference=self.model, device=self.device,
                        cancel=cancel)


"""Accuracy of a model with some layers swapped, re-running only the part of the network that changes.

A rank change touches one layer, so everything computed before that layer is the same as last
time. :class:`LayerEvaluator` traces the model with ``torch.fx`` (the swapped layers kept as leaf
calls), splits the graph at them and caches, per evaluation batch, the *frontier*: every value
computed before the cut that the rest of the network reads. In a residual stage that is the layer's
input and the shortcut's output; in a ViT block the token sequence entering the block and any shape
numbers read later. An evaluation then runs only the nodes downstream of the swapped layers, on the
cached frontier, with the replacements in place.

The full forward pass with the layers swapped is always available (``path="full"``) and gives the
same numbers: the same operations run in the same order on the same batches. It is also what runs
when a model cannot be traced (data-dependent control flow) or when the frontier would not fit in
the cache budget.
"""
from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch.utils.data import DataLoader
from torch.utils._pytree import tree_map

from core.errors import RankscopeError
from core.layers import set_module
from core.profile import Cancelled, batch_limit, task_for
from core.task import Scores, Task, scores_of
from core.profile.checks import check_device

INTERACTIVE_SAMPLES = 500  # default evaluation subset of the dashboard and `rankscope bench dashboard`
Progress = Callable[[int, int], None]  # (batches done, batches in all)


class _LeafTracer(fx.Tracer):
    """The default tracer, keeping the named modules as single ``call_module`` nodes."""

    def __init__(self, leaves: Iterable[str]) -> None:
        super().__init__()
        self.leaves = set(leaves)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name in self.leaves or super().is_leaf_module(m, module_qualified_name)


def _closure(start: Iterable[fx.Node], keep: Callable[[fx.Node], bool]) -> set[fx.Node]:
    """``start`` and all their ancestors for which ``keep`` holds (the walk stops at the others)."""
    seen: set[fx.Node] = set()
    stack = [n for n in start if keep(n)]
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(a for a in node.all_input_nodes if keep(a))
    return seen


def _attributes(graph: fx.Graph, model: nn.Module, renamed: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The submodules and attributes the graph's ``call_module``/``get_attr`` nodes name, shared (not copied).

    ``renamed`` maps a node target to the module path it stands for (the cut's slots).
    """
    renamed = renamed or {}
    owned: dict[str, Any] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            owned[node.target] = model.get_submodule(renamed.get(node.target, node.target))
        elif node.op == "get_attr":
            parent, _, name = node.target.rpartition(".")
            owned[node.target] = getattr(model.get_submodule(parent) if parent else model, name)
    return owned


@dataclass
class Cut:
    """A model split at a set of layers: ``prefix(inputs) -> frontier``, ``suffix(*frontier) -> outputs``.

    ``slots`` maps each layer path to the ``suffix`` attribute its calls go through, so a replacement is
    put in place by setting that attribute on ``suffix`` (which is this object's own, never the model).
    """

    targets: frozenset[str]
    prefix: fx.GraphModule
    suffix: fx.GraphModule
    slots: dict[str, str]
    frontier: list[Any] | None = field(default=None, repr=False)  # per batch: the tuple of frontier values
    nbytes: int = 0  # bytes held by ``frontier``
    writes_frontier: bool = False  # the suffix wrote into a frontier value once: hand it copies from then on
    estimate: int | None = None  # bytes ``frontier`` would take for every batch, from one batch
    head: Any = field(default=None, repr=False)  # the first batch's frontier values computed for ``estimate``, until filled


def split_model(model: nn.Module, targets: Iterable[str]) -> Cut:
    """Trace ``model`` and split it at the modules ``targets`` (``named_modules`` paths).

    Raises
    ------
    RankscopeError
        The model does not trace with ``torch.fx``, a target is never called, or no output depends on it.
    """
    targets = frozenset(targets)
    modules = dict(model.named_modules())
    unknown = sorted(t for t in targets if t not in modules or t == "")
    if unknown:
        raise RankscopeError(f"no module named {', '.join(unknown)} in the model")
    try:
        graph = _LeafTracer(targets).trace(model)
    except Exception as err:  # noqa: BLE001 - any tracing failure means: use the full forward pass
        raise RankscopeError(f"{type(model).__name__} does not trace with torch.fx ({type(err).__name__}: {err})") from None
    nodes = list(graph.nodes)
    hits = [n for n in nodes if n.op == "call_module" and n.target in targets]
    missing = sorted(targets - {n.target for n in hits})
    if missing:
        raise RankscopeError(f"{', '.join(missing)} not called as a module in the traced forward pass")
    downstream: set[fx.Node] = set()
    live: set[fx.Node] = set()  # nodes that depend on the model's inputs
    for n in nodes:
        if n.op == "placeholder" or any(a in live for a in n.all_input_nodes):
            live.add(n)
        if n in hits or any(a in downstream for a in n.all_input_nodes):
            downstream.add(n)
    output = nodes[-1]
    if output not in downstream:
        raise RankscopeError(f"the model's output does not depend on {', '.join(sorted(targets))}")
    frontier = [n for n in nodes if n in live and n not in downstream and any(u in downstream for u in n.users)]

    prefix_graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    needed = _closure(frontier, lambda n: n not in downstream)
    for n in nodes:
        if n in needed or n.op == "placeholder":
            env[n] = prefix_graph.node_copy(n, env.__getitem__)
    prefix_graph.output(tuple(env[n] for n in frontier))

    suffix_graph = fx.Graph()
    env = {n: suffix_graph.placeholder(f"frontier_{i}") for i, n in enumerate(frontier)}
    constants = _closure((a for n in downstream for a in n.all_input_nodes), lambda n: n not in live)
    slots = {t: f"rankscope_slot_{i}" for i, t in enumerate(sorted(targets))}
    for n in nodes:
        if n in constants or n in downstream:
            copied = suffix_graph.node_copy(n, env.__getitem__)
            if n in hits:
                copied.target = slots[n.target]
            env[n] = copied
    prefix = fx.GraphModule(_attributes(prefix_graph, model), prefix_graph, class_name="Prefix")
    renamed = {slot: path for path, slot in slots.items()}
    suffix = fx.GraphModule(_attributes(suffix_graph, model, renamed), suffix_graph, class_name="Suffix")
    return Cut(targets, prefix, suffix, slots)


def _nbytes(values: Any) -> int:
    total = 0

    def add(v: Any) -> Any:
        nonlocal total
        if isinstance(v, torch.Tensor):
            total += v.numel() * v.element_size()
        return v

    tree_map(add, values)
    return total


def _tensors(values: Any) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []
    tree_map(lambda v: found.append(v) if isinstance(v, torch.Tensor) else None, values)
    return found


def _clone(v: Any) -> Any:
    return v.clone() if isinstance(v, torch.Tensor) else v


def _batch_first(values: Any, batch: int) -> bool:
    """Whether every leaf of ``values`` is a tensor whose first dimension is the batch of ``batch`` examples."""
    leaves: list[Any] = []
    tree_map(leaves.append, values)
    return all(isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == batch for v in leaves)


class Stacked(nn.Module):
    """Variants of one layer on a stacked batch: the ``j``-th of ``len(variants)`` equal slices goes through ``variants[j]``.

    Every tensor argument is split along its first dimension; the outputs are concatenated back in order.
    """

    def __init__(self, variants: Sequence[nn.Module]) -> None:
        super().__init__()
        self.variants = nn.ModuleList(variants)

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        k = len(self.variants)
        split = [a.chunk(k) if isinstance(a, torch.Tensor) else [a] * k for a in args]
        named = {n: v.chunk(k) if isinstance(v, torch.Tensor) else [v] * k for n, v in kwargs.items()}
        return torch.cat([m(*(s[j] for s in split), **{n: v[j] for n, v in named.items()})
                          for j, m in enumerate(self.variants)])


class LayerEvaluator:
    """A task's scores of ``model`` on ``dataset`` with chosen layers replaced, re-running only what changes.

    Parameters
    ----------
    model : a classifier; it is only read (never modified). On another device than ``device`` a copy is moved there.
    dataset : ``(input, target)`` items (label ``-1`` where there is none; HR images for super-resolution), loaded
        once into batches of ``batch_size`` (at most the data set's ``max_batch``).
    task : how outputs are scored (default :func:`core.profile.task_for` the data set: classification with
        labels, fidelity without). For fidelity the reference is ``model`` itself: its outputs on every batch
        are computed once, here.
    batch_size : examples per forward pass; the same batches serve both evaluation paths.
    device : ``"cpu"`` or ``"cuda[:N]"``.
    cache_mb : budget for cached frontier activations (MB); least recently used cuts are dropped first,
        and a cut larger than the budget runs through the full forward pass.

    Notes
    -----
    Evaluations are serialised by a lock, so one evaluator can be shared between threads (dashboard sessions).
    """

    def __init__(self, model: nn.Module, dataset: Any, *, task: str | Task | None = None, batch_size: int = 256,
                 device: str | torch.device = "cpu", cache_mb: float = 512.0) -> None:
        self.device = check_device(device)
        first = next(model.parameters(), None)
        on_device = first is None or first.device == self.device
        self.model = model if on_device else copy.deepcopy(model).to(self.device)
        self.model.eval()
        if len(dataset) == 0:
            raise RankscopeError("the evaluation dataset is empty")
        loader = DataLoader(dataset, batch_size=batch_limit(dataset, batch_size), shuffle=False, num_workers=0)
        self.batches = [(images.to(self.device), torch.as_tensor(labels, device=self.device)) for images, labels in loader]
        self.task = task_for(dataset, task)
        with torch.no_grad():
            self.references = [self.model(x) for x, _ in self.batches] if self.task.needs_reference else []
        self.cache_bytes = int(cache_mb * 1e6)
        self._cuts: OrderedDict[frozenset[str], Cut | str] = OrderedDict()  # a str: why the cut cannot be used
        self._work: nn.Module | None = None  # private copy the full path swaps layers in
        self._lock = threading.RLock()

    @property
    def samples(self) -> int:
        """Examples evaluated per call."""
        return sum(len(labels) for _, labels in self.batches)

    def cached_mb(self) -> float:
        """MB of frontier activations held now."""
        return sum(c.nbytes for c in self._cuts.values() if isinstance(c, Cut)) / 1e6

    def path_for(self, targets: Iterable[str]) -> str:
        """``"cached"`` if swapping ``targets`` can use the cut path, else ``"full: <reason>"``."""
        with self._lock:
            cut = self._cut(frozenset(targets))
        return "cached" if isinstance(cut, Cut) else f"full: {cut}"

    def evaluate(
        self,
        replacements: Mapping[str, nn.Module] | None = None,
        *,
        path: str = "auto",
        progress: Progress | None = None,
        cancel: Callable[[], bool] | None = None,
        stop: Callable[[Scores], bool] | None = None,
    ) -> Scores:
        """Score the model with each ``replacements[path]`` in place of the module at ``path``.

        Parameters
        ----------
        replacements : module path -> new module (same inputs and outputs); empty or ``None`` scores the model as is.
        path : ``"auto"`` (the cached cut when possible), ``"cached"`` (fail if it is not possible) or ``"full"``.
        progress : called with ``(batches done, batches in all)`` after each batch.
        cancel : called before each batch; ``True`` stops with :class:`~core.profile.Cancelled`.
        stop : called after each batch but the last with the scores so far; ``True`` returns them (their
            ``samples`` say how many were scored) without the remaining batches.

        Raises
        ------
        RankscopeError
            An unknown module path, ``path="cached"`` for a model that cannot be split there, a bad ``path``.
        Cancelled
            ``cancel()`` returned ``True``.
        """
        if path not in ("auto", "cached", "full"):
            raise RankscopeError(f"path {path!r} must be 'auto', 'cached' or 'full'")
        replacements = {p: m.to(self.device).eval() for p, m in (replacements or {}).items()}
        # no_grad, not inference_mode: cached tensors keep their version counters (see _run_cut)
        with self._lock, torch.no_grad():
            if not replacements:
                return self._run(self._forward(self.model), progress, cancel, stop)
            cut = self._cut(frozenset(replacements)) if path != "full" else "full path asked for"
            if isinstance(cut, Cut):
                return self._run_cut(cut, replacements, progress, cancel, stop)
            if path == "cached":
                raise RankscopeError(f"cannot evaluate {', '.join(sorted(replacements))} from cached activations: {cut}")
            return self._run_swapped(replacements, progress, cancel, stop)

    def evaluate_variants(
        self,
        layer: str,
        variants: Sequence[nn.Module],
        *,
        stack: int = 8,
        cancel: Callable[[], bool] | None = None,
    ) -> list[Scores]:
        """The scores of the model with each of ``variants`` in place of ``layer``, several in one pass.

        Up to ``stack`` variants share one run of the suffix (the network after ``layer``) per batch: every
        cached frontier value is repeated once per variant along the batch, the slot of ``layer`` holds a
        module sending the ``j``-th copy of its input through the ``j``-th variant, and the suffix's outputs
        are split back per variant. Each example still goes through exactly the operations of
        :meth:`evaluate`, one variant at a time; the stacked pass has fewer, larger kernel calls.

        When the layer cannot use the cached cut, a frontier value is not a batch-first tensor (a shape
        number read before the layer, say), or ``stack`` is 1, each variant is evaluated with :meth:`evaluate`.

        Parameters
        ----------
        layer : module path of the layer the variants stand in for.
        variants : modules with the layer's inputs and outputs.
        stack : most variants per suffix pass (memory grows with it: ``stack`` times the suffix's activations).
        cancel : called before each batch; ``True`` stops with :class:`~core.profile.Cancelled`.

        Raises
        ------
        RankscopeError
            An unknown layer, ``stack`` below 1.
        Cancelled
            ``cancel()`` returned ``True``.
        """
        if stack < 1:
            raise RankscopeError(f"stack must be at least 1, got {stack}")
        variants = [m.to(self.device).eval() for m in variants]
        with self._lock, torch.no_grad():
            cut = self._cut(frozenset({layer}))
            if not isinstance(cut, Cut) or stack == 1 or len(variants) < 2:
                return [self.evaluate({layer: m}, cancel=cancel) for m in variants]
            self._fill(cut)
            if not all(_batch_first(values, len(labels)) for values, (_, labels) in zip(cut.frontier, self.batches)):
                return [self.evaluate({layer: m}, cancel=cancel) for m in variants]
            scores: list[Scores] = []
            for start in range(0, len(variants), stack):
                scores += self._run_stacked(cut, layer, variants[start:start + stack], cancel)
            return scores

    def _run_stacked(self, cut: Cut, layer: str, variants: list[nn.Module],
                     cancel: Callable[[], bool] | None) -> list[Scores]:
        """One suffix pass per batch for all ``variants`` of ``layer`` (see :meth:`evaluate_variants`)."""
        tallies = [self.task.tally() for _ in variants]
        setattr(cut.suffix, cut.slots[layer], Stacked(variants))
        try:
            for i, (_, labels) in enumerate(self.batches):
                if cancel is not None and cancel():
                    raise Cancelled(f"evaluation cancelled after {i} of {len(self.batches)} batches")
                repeated = tree_map(lambda v: torch.cat([v] * len(variants)) if isinstance(v, torch.Tensor) else v,
                                    cut.frontier[i])
                outputs = cut.suffix(*repeated).chunk(len(variants))
                for tally, out in zip(tallies, outputs):
                    tally.add(out, labels, self.references[i] if self.references else None)
        finally:
            setattr(cut.suffix, cut.slots[layer], self.model.get_submodule(layer))
        return [scores_of(self.task, t) for t in tallies]

    # --- the two paths -----------------------------------------------------------------------
    def _run(self, forward: Callable[[int], torch.Tensor], progress: Progress | None,
             cancel: Callable[[], bool] | None, stop: Callable[[Scores], bool] | None = None) -> Scores:
        """Score ``forward(i)``, the outputs for batch ``i``, over every batch (until ``stop`` says so)."""
        tally = self.task.tally()
        for i, (_, labels) in enumerate(self.batches):
            if cancel is not None and cancel():
                raise Cancelled(f"evaluation cancelled after {tally.seen} of {self.samples} samples")
            tally.add(forward(i), labels, self.references[i] if self.references else None)
            if progress is not None:
                progress(i + 1, len(self.batches))
            if stop is not None and i + 1 < len(self.batches) and stop(scores_of(self.task, tally)):
                break
        return scores_of(self.task, tally)

    def _forward(self, model: nn.Module) -> Callable[[int], torch.Tensor]:
        return lambda i: model(self.batches[i][0])

    def _run_swapped(self, replacements: Mapping[str, nn.Module], progress: Progress | None,
                     cancel: Callable[[], bool] | None, stop: Callable[[Scores], bool] | None) -> Scores:
        """The full forward pass of a private copy of the model with the layers swapped in (and back out)."""
        if self._work is None:
            self._work = copy.deepcopy(self.model)
        work, originals = self._work, {}
        try:
            for path, module in replacements.items():
                originals[path] = work.get_submodule(path)
                set_module(work, path, module)
            return self._run(self._forward(work), progress, cancel, stop)
        finally:
            for path, module in originals.items():
                set_module(work, path, module)

    def _run_cut(self, cut: Cut, replacements: Mapping[str, nn.Module], progress: Progress | None,
                 cancel: Callable[[], bool] | None, stop: Callable[[Scores], bool] | None) -> Scores:
        for path, module in replacements.items():
            setattr(cut.suffix, cut.slots[path], module)
        try:
            self._fill(cut)
            return self._run(lambda i: self._run_suffix(cut, i), progress, cancel, stop)
        finally:
            for path, slot in cut.slots.items():
                setattr(cut.suffix, slot, self.model.get_submodule(path))

    def _run_suffix(self, cut: Cut, i: int) -> torch.Tensor:
        """The suffix on batch ``i``'s cached frontier, guarding the cache against writes.

        A layer after the cut may write into its input (``ReLU(inplace=True)``, ``x += y``), which
        would corrupt the cache. In-place writes bump a tensor's version counter (through views too):
        if a run moved one, that batch's frontier is recomputed and the cut hands out copies from then on.
        """
        values = cut.frontier[i]
        if cut.writes_frontier:
            return cut.suffix(*tree_map(_clone, values))
        versions = [(t, t._version) for t in _tensors(values)]
        out = cut.suffix(*values)
        if any(t._version != v for t, v in versions):
            cut.writes_frontier = True
            cut.frontier[i] = cut.prefix(self.batches[i][0])
        return out

    def _cut(self, targets: frozenset[str]) -> Cut | str:
        if targets not in self._cuts:
            try:
                self._cuts[targets] = split_model(self.model, targets)
            except RankscopeError as err:
                self._cuts[targets] = str(err)
        self._cuts.move_to_end(targets)
        cut = self._cuts[targets]
        if isinstance(cut, Cut) and cut.frontier is None and self._frontier_bytes(cut) > self.cache_bytes:
            return f"its cached activations would take more than the {self.cache_bytes / 1e6:.0f} MB budget"
        return cut

    def _frontier_bytes(self, cut: Cut) -> int:
        """Bytes the frontier of all batches would take, from one batch's prefix pass (remembered; that batch's values
        are kept for :meth:`_fill` when they fit the budget, so the first batch is not run through the prefix twice)."""
        if cut.estimate is None:
            images = self.batches[0][0]
            with torch.no_grad():
                cut.head = cut.prefix(images)
            cut.estimate = _nbytes(cut.head) * self.samples // len(images)
            if cut.estimate > self.cache_bytes:
                cut.head = None
        return cut.estimate

    def _fill(self, cut: Cut) -> None:
        """On first use of ``cut`` (or after its frontier was evicted): one prefix pass over every batch, cached."""
        if cut.frontier is None:
            head, cut.head = cut.head, None
            cut.frontier = [head if i == 0 and head is not None else cut.prefix(images)
                            for i, (images, _) in enumerate(self.batches)]
            cut.nbytes = _nbytes(cut.frontier)
            self._evict()

    def _evict(self) -> None:
        """Drop the least recently used cached frontiers until the total fits the budget."""
        for key in list(self._cuts):
            if self.cached_mb() * 1e6 <= self.cache_bytes:
                break
            cut = self._cuts[key]
            if isinstance(cut, Cut) and key != next(reversed(self._cuts)):
                cut.frontier, cut.nbytes = None, 0


def swapped_copy(model: nn.Module, replacements: Mapping[str, nn.Module]) -> nn.Module:
    """A deep copy of ``model`` with each ``replacements[path]`` in place of its module (the model is left as is).

    With the replacements that :func:`core.plan.apply_plan` would build, this is the model it returns;
    the replacements themselves are put in, not copied.
    """
    memo = {id(model.get_submodule(path)): module for path, module in replacements.items()}
    new = copy.deepcopy(model, memo)
    for path, module in replacements.items():
        set_module(new, path, module)
    return new.eval()

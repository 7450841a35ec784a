"""Walking a dense and a compressed model side by side, block by block, over calibration batches.

Every post-training step works in forward order: at each layer it needs what that layer receives (and returns) on
the calibration batches in the dense model and in the compressed model as it stands, with everything before it
already done. Re-running the network from its input for every layer would cost ``L / 2`` whole passes for ``L``
layers; the :class:`Walker` keeps instead, for the current *block* (:func:`find_blocks`), its inputs in both models
for every batch, runs only that block as far as the layer asked for, and moves to the next block by running the
finished block once: where the forward pass is a chain (one block's output is the next one's input, with the same
keyword arguments; checked on one example), its outputs are the next inputs, else the next block's inputs are
captured by running the models from their input. The whole walk costs a few passes of the network.

Blocks: the module tree opened from the root through plain containers (``nn.Sequential``, ``nn.ModuleList``,
``nn.ModuleDict`` exactly, not their subclasses such as torchvision's ``Conv2dNormActivation``) and through any
module that holds a ``ModuleList`` (a transformer's stack of layers, wherever its wrappers put it); each module
reached that is not opened is a block: a residual block, a transformer layer, a conv of a plain stack.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack

import torch
from torch import nn

from core.hooks import first_calls

CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
Call = tuple[tuple, dict]  # a module call's (args, kwargs)


class _Reached(Exception):
    """Raised by a hook once the module of interest has run: the rest of the pass is not needed."""


def find_blocks(model: nn.Module, prefix: str = "") -> list[str]:
    """Paths of ``model``'s blocks (module docstring), in module order."""
    out = []
    for name, child in model.named_children():
        path = f"{prefix}{name}"
        opened = type(child) in CONTAINERS or any(type(m) is nn.ModuleList for m in child.modules())
        out += find_blocks(child, f"{path}.") if opened else [path]
    return out


def covers(block: str, path: str) -> bool:
    """Whether the module path ``path`` lies inside (or is) the block ``block``."""
    return path == block or path.startswith(f"{block}.")


def main_output(out: object) -> torch.Tensor:
    """A module's output tensor (the first element of a tuple, as transformer layers return)."""
    return out[0] if isinstance(out, (tuple, list)) else out


def _detach(value: object) -> object:
    return value.detach() if isinstance(value, torch.Tensor) else value


def run_until(runner: nn.Module, call: Call, module: nn.Module) -> tuple[Call, torch.Tensor]:
    """Run ``runner(*args, **kwargs)`` until ``module`` (inside it) has run: ``(module's call, its output)``."""
    seen: dict[str, object] = {}

    def hook(_m: nn.Module, args: tuple, kwargs: dict, out: object) -> None:
        seen["call"] = (tuple(_detach(a) for a in args), {k: _detach(v) for k, v in kwargs.items()})
        seen["out"] = main_output(out).detach()
        raise _Reached

    with ExitStack() as stack, torch.no_grad():
        stack.enter_context(module.register_forward_hook(hook, with_kwargs=True))
        try:
            runner(*call[0], **call[1])
        except _Reached:
            pass
    if "call" not in seen:
        raise RuntimeError(f"{type(module).__name__} is not called in the forward pass")
    return seen["call"], seen["out"]


def call_order(model: nn.Module, example: torch.Tensor, paths: Sequence[str]) -> list[str]:
    """``paths`` in the order the forward pass first calls them (those it never calls are left out)."""
    return list(first_calls(model, example, list(paths)))


def _chained(model: nn.Module, example: torch.Tensor, blocks: list[str]) -> list[bool]:
    """Per block after the first: whether its input is the previous block's output, with the same keywords."""
    calls = first_calls(model, example, blocks)
    outputs: dict[str, torch.Tensor] = {}

    def keep(path: str) -> Callable[[nn.Module, tuple, object], None]:
        def hook(_m: nn.Module, _args: tuple, out: object) -> None:  # returns None: the output stays as it is
            outputs.setdefault(path, main_output(out).detach().clone())
        return hook

    with ExitStack() as stack, torch.no_grad():
        for path in blocks:
            stack.enter_context(model.get_submodule(path).register_forward_hook(keep(path)))
        model(example)
    chained = []
    for prev, path in zip(blocks, blocks[1:]):
        args, kwargs = calls.get(path, ((), {}))
        prev_kwargs = calls.get(prev, ((), {}))[1]
        same = bool(args) and isinstance(args[0], torch.Tensor) and prev in outputs and len(args) == 1 \
            and args[0].shape == outputs[prev].shape and torch.equal(args[0], outputs[prev]) \
            and kwargs.keys() == prev_kwargs.keys() \
            and all(_same(kwargs[k], prev_kwargs[k]) for k in kwargs)
        chained.append(same)
    return chained


def _same(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a is b or a == b


class Walker:
    """The dense and the compressed model walked block by block over ``batches`` (module docstring).

    ``blocks()`` yields each block path in forward order with its inputs ready; inside, :meth:`at` gives a module's
    calls and outputs in both models, and :attr:`dense_calls` / :attr:`compressed_calls` the block's own.
    """

    def __init__(self, dense: nn.Module, compressed: nn.Module, batches: Sequence[torch.Tensor]) -> None:
        self.dense, self.compressed, self.batches = dense.eval(), compressed.eval(), list(batches)
        example = self.batches[0][:1]
        self.paths = call_order(dense, example, find_blocks(dense))
        self.chained = _chained(dense, example, self.paths)
        self.dense_calls: list[Call] = []
        self.compressed_calls: list[Call] = []

    def _capture(self, model: nn.Module, path: str) -> list[Call]:
        return [run_until(model, ((x,), {}), model.get_submodule(path))[0] for x in self.batches]

    def blocks(self, wanted: Sequence[str] | None = None) -> Iterator[str]:
        """Each block (those covering a path of ``wanted``, all when ``None``) in forward order, its inputs captured
        in both models; the compressed model's block may be changed before the next one is asked for."""
        previous = None
        for i, path in enumerate(self.paths):
            if wanted is not None and not any(covers(path, w) for w in wanted):
                continue
            if previous is not None and previous == i - 1 and self.chained[i - 1]:
                self.dense_calls = self._advance(self.dense, self.paths[i - 1], self.dense_calls)
                self.compressed_calls = self._advance(self.compressed, self.paths[i - 1], self.compressed_calls)
            else:
                self.dense_calls = self._capture(self.dense, path)
                self.compressed_calls = self._capture(self.compressed, path)
            previous = i
            yield path

    @staticmethod
    def _advance(model: nn.Module, block: str, calls: list[Call]) -> list[Call]:
        """The next block's calls from ``block``'s: its outputs, with the same keywords (a chain)."""
        module = model.get_submodule(block)
        with torch.no_grad():
            return [((main_output(module(*args, **kwargs)).detach(),), kwargs) for args, kwargs in calls]

    def at(self, block: str, path: str) -> Iterator[tuple[Call, torch.Tensor, Call, torch.Tensor]]:
        """Per batch: ``(call, output)`` of the module at ``path`` (inside ``block``) in the dense model, then in the
        compressed model, each running only its block from the captured inputs."""
        dense_block, compressed_block = self.dense.get_submodule(block), self.compressed.get_submodule(block)
        dense_module, compressed_module = self.dense.get_submodule(path), self.compressed.get_submodule(path)
        for dense_call, compressed_call in zip(self.dense_calls, self.compressed_calls):
            yield (*run_until(dense_block, dense_call, dense_module), *run_until(compressed_block, compressed_call,
                                                                               compressed_module))


def as_batches(calibration: torch.Tensor | Sequence[torch.Tensor], batch_size: int = 32) -> list[torch.Tensor]:
    """Calibration inputs as a list of batches: a tensor is split into ``batch_size`` rows, a sequence kept."""
    if isinstance(calibration, torch.Tensor):
        return list(calibration.split(batch_size))
    return list(calibration)

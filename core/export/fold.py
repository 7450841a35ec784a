"""BatchNorm folding: an eval-mode BatchNorm right after a convolution or linear layer becomes part of its weights.

The pairs are found in the model's ``torch.fx`` graph (:func:`torch.fx.symbolic_trace`): a ``BatchNorm2d`` /
``BatchNorm1d`` node whose only input is a ``Conv2d`` / ``Conv1d`` / ``Linear`` node with no other user. fx traces
through containers, so a compressed layer (an ``nn.Sequential`` of factors, e.g. SVD's k×k → r, 1×1 r → out)
followed by the original BatchNorm pairs the BatchNorm with the *last* factor. Where the model cannot be traced,
the fallback walks ``nn.Sequential`` containers (their forward is known: each child on the previous one's output)
and pairs a child with the BatchNorm after it; attribute pairs such as ``conv1`` / ``bn1`` are not guessed, since
only the forward says how they are wired.

The arithmetic is :func:`torch.nn.utils.fusion.fuse_conv_bn_eval` / ``fuse_linear_bn_eval``; the BatchNorm becomes
``nn.Identity``. Only modules of exactly these types are paired: a subclass may change the forward (timm's
``StdConv2d`` standardises its weight, ``BatchNormAct2d`` adds an activation). A ``Linear`` → ``BatchNorm1d`` pair
is folded only where an example input shows the linear output is 2-D ``(N, features)``: on ``(N, L, features)``
the BatchNorm would normalise ``L``, not the linear's outputs.

Folding multiplies weights by ``gamma / sqrt(var + eps)``, which can make float32 weights subnormal (below
``torch.finfo(torch.float32).tiny``); CPUs run subnormal arithmetic several times slower, so the folded copy has
them flushed to zero (:func:`flush_subnormals`).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

# (layer type, the BatchNorm type that may follow it): exact types, not subclasses.
FOLDABLE = {nn.Conv2d: nn.BatchNorm2d, nn.Conv1d: nn.BatchNorm1d, nn.Linear: nn.BatchNorm1d}
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass(frozen=True)
class FoldResult:
    """What :func:`fold_model` did.

    Attributes
    ----------
    model : the folded copy (eval mode).
    folded : ``(layer path, BatchNorm path)`` of each pair folded, in graph order.
    flushed : float32 weights of the copy set to zero because they were subnormal.
    traced : whether the pairs came from the fx graph (``False``: the ``nn.Sequential`` fallback).
    """

    model: nn.Module
    folded: tuple[tuple[str, str], ...]
    flushed: int
    traced: bool


def fold_batchnorm(model: nn.Module, example: torch.Tensor | None = None) -> nn.Module:
    """A copy of ``model`` with every foldable BatchNorm folded into the layer before it; ``model`` is untouched.

    Parameters
    ----------
    model : the model; its BatchNorms in training mode are left as they are (fold an ``eval()`` model).
    example : an input, needed only to fold ``Linear`` → ``BatchNorm1d`` pairs (their output must be 2-D).

    Returns
    -------
    nn.Module
        The folded copy, subnormal float32 weights flushed to zero. See :func:`fold_model` for what was folded.
    """
    return fold_model(model, example).model


def fold_model(model: nn.Module, example: torch.Tensor | None = None) -> FoldResult:
    """:func:`fold_batchnorm`, with the pairs folded and the subnormals flushed."""
    folded = copy.deepcopy(model)
    pairs = _traced_pairs(folded, example)
    traced = pairs is not None
    if pairs is None:
        pairs = _sequential_pairs(folded)
    for layer_path, bn_path in pairs:
        layer, bn = folded.get_submodule(layer_path), folded.get_submodule(bn_path)
        fuse = fuse_linear_bn_eval if isinstance(layer, nn.Linear) else fuse_conv_bn_eval
        with torch.no_grad():
            _replace(folded, layer_path, fuse(layer, bn))
        _replace(folded, bn_path, nn.Identity())
    return FoldResult(folded, tuple(pairs), flush_subnormals(folded), traced)


def count_batchnorms(model: nn.Module) -> int:
    """How many ``BatchNorm1d`` / ``BatchNorm2d`` modules ``model`` holds."""
    return sum(isinstance(m, BATCHNORMS) for m in model.modules())


def count_subnormals(model: nn.Module) -> int:
    """How many float32 entries of ``model``'s parameters and buffers are subnormal (nonzero, below ``finfo.tiny``)."""
    return sum(int(_subnormal(t).sum()) for t in _float32_tensors(model))


def flush_subnormals(model: nn.Module) -> int:
    """Set ``model``'s subnormal float32 parameters and buffers to zero, in place; return how many were."""
    flushed = 0
    with torch.no_grad():
        for tensor in _float32_tensors(model):
            mask = _subnormal(tensor)
            flushed += int(mask.sum())
            tensor.copy_(torch.where(mask, torch.zeros_like(tensor), tensor))
    return flushed


def _float32_tensors(model: nn.Module) -> list[torch.Tensor]:
    return [t for t in [*model.parameters(), *model.buffers()] if t.dtype == torch.float32]


def _subnormal(tensor: torch.Tensor) -> torch.Tensor:
    return (tensor != 0) & (tensor.abs() < torch.finfo(torch.float32).tiny)


def _foldable(layer: nn.Module, bn: nn.Module) -> bool:
    """Exact types that fold, both in eval mode, and running statistics to fold with."""
    return (FOLDABLE.get(type(layer)) is type(bn) and not layer.training and not bn.training
            and bn.running_mean is not None and bn.running_var is not None)


def _traced_pairs(model: nn.Module, example: torch.Tensor | None) -> list[tuple[str, str]] | None:
    """The foldable pairs of ``model``'s fx graph, or ``None`` when it cannot be traced."""
    try:
        graph = fx.symbolic_trace(model)
    except Exception:  # control flow on values, unsupported Python: fx raises many types
        return None
    modules = dict(graph.named_modules())
    calls: dict[str, int] = {}
    for node in graph.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    attributes = [n.target for n in graph.graph.nodes if n.op == "get_attr"]
    shapes = _output_dims(graph, example)
    pairs = []
    for node in graph.graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], BATCHNORMS):
            continue
        if len(node.args) != 1 or node.kwargs or not isinstance(node.args[0], fx.Node):
            continue
        source = node.args[0]
        if source.op != "call_module" or len(source.users) != 1:
            continue
        layer, bn = modules[source.target], modules[node.target]
        once = calls[source.target] == calls[node.target] == 1
        read = any(a == p or a.startswith(f"{p}.") for a in attributes for p in (source.target, node.target))
        if not _foldable(layer, bn) or not once or read:
            continue
        if isinstance(layer, nn.Linear) and shapes.get(source.name) != 2:
            continue
        pairs.append((source.target, node.target))
    return pairs


def _output_dims(graph: fx.GraphModule, example: torch.Tensor | None) -> dict[str, int]:
    """``{node name: output dimensions}`` from running ``graph`` on ``example`` (empty without one)."""
    if example is None:
        return {}
    with torch.no_grad():
        ShapeProp(graph).propagate(example)
    return {n.name: len(n.meta["tensor_meta"].shape) for n in graph.graph.nodes
            if isinstance(n.meta.get("tensor_meta"), TensorMetadata)}


def _sequential_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """Foldable ``(child, next child)`` pairs inside plain ``nn.Sequential`` containers (no Linear: no shapes)."""
    uses: dict[int, int] = {}
    for module in model.modules(remove_duplicate=False):
        uses[id(module)] = uses.get(id(module), 0) + 1
    pairs = []
    for path, container in model.named_modules():
        if not _plain_sequential(container):
            continue
        children = list(container.named_children())
        for (name, child), (next_name, bn) in zip(children, children[1:]):
            last_name, layer = _last_layer(name, child)
            if isinstance(layer, nn.Linear) or uses[id(layer)] > 1 or uses[id(bn)] > 1 or not _foldable(layer, bn):
                continue
            prefix = f"{path}." if path else ""
            pairs.append((prefix + last_name, prefix + next_name))
    return pairs


def _plain_sequential(module: nn.Module) -> bool:
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def _last_layer(name: str, module: nn.Module) -> tuple[str, nn.Module]:
    """The module whose output a plain ``nn.Sequential`` returns (recursively), with its path below ``name``."""
    while _plain_sequential(module) and len(module):
        last = list(module.named_children())[-1]
        name, module = f"{name}.{last[0]}", last[1]
    return name, module


def _replace(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, child = path.rpartition(".")
    setattr(model.get_submodule(parent), child, module)

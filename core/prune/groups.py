"""The channel groups structured pruning can shrink, and their names.

Torch-Pruning's dependency graph (Fang et al., 2023) ties together every layer whose channels must be
removed together: a conv's output channels, its BatchNorm, the next conv's input channels, and across
a residual add every branch that feeds it. Each such group is named by the ``named_modules`` path of
its root, ``group[0].dep.target.module`` of ``DependencyGraph.get_all_groups(root_module_types=[Conv2d,
Linear], ignored_layers=[classifier])`` -- the same names :mod:`core.resample` uses.

Left out: the output classifier (the last ``nn.Linear`` in module order; its outputs are the logits)
and any group that contains it. In a timm ``VisionTransformer`` the residual stream (patch embedding,
norms, class token, position embedding) is left out too, by ignoring ``patch_embed.proj`` as a root;
the qkv group of each timm ``Attention`` is offered only as whole heads, named
``"<attention path>.heads"`` with one unit per head. Capsule networks are not supported.

References
----------
Fang et al., "DepGraph: Towards Any Structural Pruning", CVPR 2023, arXiv:2301.12900.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch_pruning as tp
from timm.layers import Attention
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from core.errors import RankscopeError
from core.models.capsnet import is_capsule_model
from core.profile.context import prepared

ROOT_TYPES = (nn.Conv2d, nn.Linear)
HEADS = "heads"  # kind of a group of attention heads; the other kind is "channels"
CHANNELS = "channels"


class GroupInfo(NamedTuple):
    """A prunable group: ``kind`` (``"channels"`` or ``"heads"``) and how many units it has now."""

    kind: str
    channels: int


@dataclass(frozen=True)
class GraphSetup:
    """What Torch-Pruning is told about a model besides its layers.

    Attributes
    ----------
    ignored : layers that may not lose output channels (the classifier, a ViT's patch embedding).
    attention : ``{qkv layer: its timm Attention module}`` for head pruning.
    unwrapped : ``(parameter, pruning dim)`` of parameters outside any prunable layer (a ViT's tokens);
        given explicitly so tp does not warn, and never pruned since their group is ignored.
    """

    ignored: list[nn.Module]
    attention: dict[nn.Linear, Attention]
    unwrapped: list[tuple[nn.Parameter, int]]

    def num_heads(self) -> dict[nn.Module, int]:
        """A fresh ``{qkv layer: heads}``; tp's pruner decrements the dict it is given."""
        return {qkv: attn.num_heads for qkv, attn in self.attention.items()}


def graph_setup(model: nn.Module) -> GraphSetup:
    """The classifier and ViT parts to keep out of pruning; :class:`RankscopeError` for a capsule network."""
    if is_capsule_model(model):
        raise RankscopeError("capsule networks cannot be pruned structurally (capsule dimensions are not channels); "
                             "use low-rank decomposition for them")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    ignored: list[nn.Module] = linears[-1:]
    unwrapped: list[tuple[nn.Parameter, int]] = []
    if isinstance(model, VisionTransformer):
        ignored.append(model.patch_embed.proj)
        unwrapped = [(p, p.dim() - 1) for p in model.parameters(recurse=False)]  # cls_token, pos_embed: (1, N, dim)
    attention = {m.qkv: m for m in model.modules() if isinstance(m, Attention)}
    return GraphSetup(ignored, attention, unwrapped)


def dependency_graph(model: nn.Module, example: torch.Tensor, setup: GraphSetup) -> tp.DependencyGraph:
    """Trace ``model(example)`` into Torch-Pruning's dependency graph, in eval mode so BatchNorm statistics stay put."""
    first = next(model.parameters(), None)
    home = first.device if first is not None else torch.device("cpu")
    with prepared(model, home), torch.enable_grad():  # tp traces the autograd graph
        return tp.DependencyGraph().build_dependency(model, example_inputs=example, unwrapped_parameters=setup.unwrapped)


def group_roots(model: nn.Module, example: torch.Tensor, setup: GraphSetup | None = None) -> dict[str, tuple[nn.Module, GroupInfo, tp.Group]]:
    """``{name: (root layer, info, tp group)}`` for every prunable group, in module order.

    The root of a heads group is the attention's qkv layer; its ``channels`` counts heads.
    """
    setup = setup or graph_setup(model)
    graph = dependency_graph(model, example, setup)
    paths = {m: n for n, m in model.named_modules()}
    found = {}
    for group in graph.get_all_groups(ignored_layers=setup.ignored, root_module_types=list(ROOT_TYPES)):
        root = group[0].dep.target.module
        if root in setup.attention:
            attn = setup.attention[root]
            found[f"{paths[attn]}.{HEADS}"] = (root, GroupInfo(HEADS, attn.num_heads), group)
        else:
            found[paths[root]] = (root, GroupInfo(CHANNELS, graph.get_out_channels(root)), group)
    order = {n: i for i, n in enumerate(paths.values())}
    return dict(sorted(found.items(), key=lambda item: order[paths[item[1][0]]]))


def prunable_groups(model: nn.Module, example: torch.Tensor) -> dict[str, GroupInfo]:
    """The groups :func:`core.prune.prune_model` can shrink, by name, in module order.

    Parameters
    ----------
    model : the network, traced once on ``example`` in eval mode and left unchanged.
    example : an input batch for the trace, e.g. :func:`core.profile.report.example_input`.

    Returns
    -------
    dict
        ``{name: GroupInfo(kind, channels)}``: ``"channels"`` groups named by their root layer's path,
        ``"heads"`` groups named ``"<attention path>.heads"`` counting heads.

    Raises
    ------
    RankscopeError
        A capsule network.
    """
    return {name: info for name, (_, info, _) in group_roots(model, example).items()}


def member_layers(model: nn.Module, group: tp.Group) -> list[str]:
    """Paths of the conv and linear layers a group changes (output or input side), in module order."""
    members = {dep.target.module for dep, _ in group if isinstance(dep.target.module, ROOT_TYPES)}
    return [n for n, m in model.named_modules() if m in members]

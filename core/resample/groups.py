"""Channel groups: the tensors that share one channel axis and must change width together.

Torch-Pruning's dependency graph finds them (a conv's output channels, its BatchNorm, the next
layer's input channels, everything tied by residual additions), so no tracer is written here.

Naming (shared with ``core/prune``): a group is named by the module path of
``group[0].dep.target.module`` for the groups of
``DG.get_all_groups(root_module_types=[nn.Conv2d, nn.Linear], ignored_layers=...)``, where the
ignored layers are the output classifier (the last ``nn.Linear`` producing the logits) and, for timm
Vision Transformers, ``patch_embed.proj``. Two kinds of group torch-pruning cannot express are
written by hand and replace the graph's group rooted at the same layer:

- ``"<attn>.heads"`` (kind ``heads``): a timm ``Attention``'s heads. Its ``qkv`` output is laid out
  ``(3, heads, head_dim)``; the group's axis is ``heads``, covering the q, k and v slices of ``qkv``
  and the matching input columns of ``proj``; ``head_dim`` is kept. The graph's flat ``"<attn>.qkv"``
  group (192 mixed q/k/v channels whose width would have to stay a multiple of ``3 x heads``) is
  folded into it and not listed.
- ``"<primary>.types"`` (kind ``capsule-types``): a :class:`~core.models.capsnet.CapsNet`'s primary
  capsule types. The primary conv's output is ``(types, in_dim)`` channels and the routing tensor
  ``W[in_caps, ...]`` has ``in_caps = (types, positions)``; torch-pruning sees ``W`` only as an
  unwrapped parameter (it would cut its last axis), so the group is built from the model's attributes.

A ViT's residual stream (the embedding width, tied through every block, the LayerNorms, the class
token and the position embedding) is left out: LayerNorm normalises across that very axis, so no
channel of it can be resampled without changing every other one. Groups touching a layer whose
channels are not independent (LayerNorm, GroupNorm, grouped or depthwise convs) or a module this
package cannot reshape are left out for the same reason.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from core.errors import RankscopeError
from core.models.capsnet import CapsNet, CapsuleRouting
from core.profile.context import prepared

KINDS = ("conv", "linear", "residual", "mlp", "heads", "capsule-types")


@dataclass(frozen=True)
class Member:
    """One tensor of a group and where its channels lie.

    Attributes
    ----------
    key : the tensor's name in ``model.state_dict()`` (e.g. ``"layer1.0.conv1.weight"``).
    axis : the tensor dimension that holds the channels.
    role : ``"out"`` when the group's channels are what this tensor produces (filters, biases,
        BatchNorm entries: resampling interpolates them), ``"in"`` when the tensor consumes them
        (the next layer's input columns: interpolated and scaled by the quadrature weight).
    outer, inner : the axis is laid out ``(outer, N, inner)``: ``qkv`` rows are ``(3, heads, head_dim)``,
        a flattened ``(C, H, W)`` feeding a Linear is ``(1, C, H*W)``; plain members have ``1, 1``.
    """

    key: str
    axis: int
    role: str
    outer: int = 1
    inner: int = 1


@dataclass(frozen=True)
class ChannelGroup:
    """Tensors sharing one channel axis of ``size`` channels.

    Attributes
    ----------
    name : the group's name (see the module docstring for the convention).
    kind : one of :data:`KINDS`.
    size : number of channels N.
    members : every tensor that carries the axis, with its layout.
    """

    name: str
    kind: str
    size: int
    members: tuple[Member, ...]


def channel_view(t: torch.Tensor, member: Member, size: int) -> torch.Tensor:
    """``t`` viewed as ``(pre, outer, N, inner, post)`` around the member's axis (N = ``size``)."""
    shape = t.shape
    if shape[member.axis] != member.outer * size * member.inner:
        raise ValueError(f"{member.key}: axis {member.axis} has {shape[member.axis]} entries, not {member.outer}x{size}x{member.inner}")
    return t.reshape(*shape[: member.axis], member.outer, size, member.inner, *shape[member.axis + 1 :])


def channel_matrix(t: torch.Tensor, member: Member, size: int) -> torch.Tensor:
    """The member's tensor as ``(N, everything else)``, one row per channel."""
    return channel_view(t, member, size).movedim(member.axis + 1, 0).reshape(size, -1)


def output_layer(model: nn.Module, example: torch.Tensor) -> nn.Module | None:
    """The layer whose output channels are the model's outputs, or ``None``.

    For logits ``(B, classes)``: the last ``nn.Linear`` of that width (the classifier). For images
    ``(B, C, H, W)`` (super-resolution): the last convolution, transposed or not, in module order, whose channels
    are the output's colour planes or, before a pixel shuffle, its sub-pixels; neither can be dropped.
    """
    with torch.no_grad(), prepared(model, example.device):
        out = model(example)
    if out.ndim == 4:
        convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        return convs[-1] if convs else None
    linears = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == out.shape[-1]]
    return linears[-1] if linears else None


def _layer_members(path: str, module: nn.Module, handler: str, size: int) -> list[Member] | None:
    """Members contributed by one layer of a torch-pruning group; ``None`` when it cannot be resampled."""
    prefix = f"{path}." if path else ""
    out = handler == "prune_out_channels"
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        if isinstance(module, nn.Conv2d) and module.groups != 1:
            return None
        if out:
            return [Member(prefix + p, 0, "out") for p in ("weight", "bias") if getattr(module, p) is not None]
        width = module.weight.shape[1]
        if width % size:
            return None
        # A Linear fed by a flattened (C, H, W) map sees channel-major inputs: column c*HW + s.
        return [Member(prefix + "weight", 1, "in", inner=width // size)]
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        names = [p for p in ("weight", "bias") if getattr(module, p) is not None]
        names += [b for b in ("running_mean", "running_var") if getattr(module, b) is not None]
        return [Member(prefix + p, 0, "out") for p in names]
    return None


def _tp_group(group, names: dict[nn.Module, str]) -> ChannelGroup | None:
    root = group[0].dep.target.module
    size = len(group[0].idxs)
    members: list[Member] = []
    producers = 0
    for dep, _ in group:
        module = dep.target.module
        if type(module).__module__.startswith("torch_pruning"):
            continue  # the graph's own nodes for reshapes, activations and additions carry no tensors
        handler = getattr(dep.handler, "__name__", "")
        layer = _layer_members(names.get(module, ""), module, handler, size) if module in names else None
        if layer is None:
            return None
        members += [m for m in layer if m not in members]
        producers += isinstance(module, (nn.Conv2d, nn.Linear)) and handler == "prune_out_channels"
    name = names[root]
    if producers > 1:
        kind = "residual"
    elif isinstance(root, nn.Conv2d):
        kind = "conv"
    else:
        parent = name.rpartition(".")[0]
        kind = "mlp" if parent.split(".")[-1] == "mlp" else "linear"
    return ChannelGroup(name, kind, size, tuple(members))


def _heads_group(path: str, attn: nn.Module) -> ChannelGroup | None:
    """The head axis of a timm ``Attention`` (plain: no scale norm, no gate)."""
    if not isinstance(getattr(attn, "norm", nn.Identity()), nn.Identity) or getattr(attn, "gate", None) is not None:
        return None
    heads, hd = attn.num_heads, attn.head_dim
    members = [Member(f"{path}.qkv.weight", 0, "out", outer=3, inner=hd)]
    if attn.qkv.bias is not None:
        members.append(Member(f"{path}.qkv.bias", 0, "out", outer=3, inner=hd))
    members.append(Member(f"{path}.proj.weight", 1, "in", inner=hd))
    return ChannelGroup(f"{path}.heads", "heads", heads, tuple(members))


def _capsule_group(path: str, net: CapsNet) -> ChannelGroup:
    """The primary capsule types of a CapsNet: primary conv outputs and the routing tensor's input capsules."""
    prefix = f"{path}." if path else ""
    t, d = net.types, net.in_dim
    positions = net.digits.W.shape[0] // t
    members = [Member(f"{prefix}primary.weight", 0, "out", inner=d)]
    if net.primary.bias is not None:
        members.append(Member(f"{prefix}primary.bias", 0, "out", inner=d))
    # in_caps is ordered (type, y, x), as CapsNet.primary_capsules flattens it.
    members.append(Member(f"{prefix}digits.W", 0, "in", inner=positions))
    return ChannelGroup(f"{prefix}primary.types", "capsule-types", t, tuple(members))


def _is_timm_attention(module: nn.Module) -> bool:
    return all(hasattr(module, a) for a in ("qkv", "proj", "num_heads", "head_dim")) and isinstance(module.qkv, nn.Linear)


def ignored_layers(model: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """The layers left out of the graph's groups: the output layer (:func:`output_layer`) and a ViT's patch embedding."""
    ignored = [m for m in (output_layer(model, example),) if m is not None]
    patch = getattr(getattr(model, "patch_embed", None), "proj", None)
    if patch is not None:
        ignored.append(patch)  # excludes the residual stream (see the module docstring)
    return ignored


def channel_groups(model: nn.Module, example: torch.Tensor) -> dict[str, ChannelGroup]:
    """Every resampleable channel group of ``model``, by name, in model order.

    Parameters
    ----------
    model : the network (left untouched; it is run on ``example`` in eval mode, then its modes are restored).
    example : an input batch, e.g. :func:`core.profile.report.example_input`.

    Returns
    -------
    dict[str, ChannelGroup]
        Groups ordered by the position of their root layer in ``model.named_modules()``.

    Raises
    ------
    RankscopeError
        A transformers language model: its groups (heads, MLP channels) are not modelled here, and torch-pruning's
        dependency graph of SmolLM2's 30 layers took over 3 minutes to build before giving none that resample.
    """
    if hasattr(model, "causal_lm"):
        raise RankscopeError("channel groups of a language model are not supported: resample or prune a conv or "
                             "vision-transformer network")
    names = {m: n for n, m in model.named_modules()}
    order = {n: i for i, n in enumerate(names.values())}
    with warnings.catch_warnings(), prepared(model, example.device):
        warnings.simplefilter("ignore")  # torch-pruning warns about unwrapped parameters (cls_token, W): handled here
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
        tp_groups = list(graph.get_all_groups(root_module_types=[nn.Conv2d, nn.Linear], ignored_layers=ignored_layers(model, example)))
    custom: dict[str, ChannelGroup] = {}
    replaced: set[str] = set()
    for path, module in model.named_modules():
        if _is_timm_attention(module):
            replaced.add(f"{path}.qkv")
            group = _heads_group(path, module)
        elif isinstance(module, CapsNet) and isinstance(module.digits, CapsuleRouting):
            replaced.add(f"{path}.primary" if path else "primary")
            group = _capsule_group(path, module)
        else:
            continue
        if group is not None:
            custom[group.name] = group
    groups = dict(custom)
    for g in tp_groups:
        if names.get(g[0].dep.target.module) in replaced:
            continue
        group = _tp_group(g, names)
        if group is not None:
            groups[group.name] = group

    def position(name: str) -> int:
        for suffix in (".heads", ".types"):
            if name.endswith(suffix):
                return order[name[: -len(suffix)]]
        return order[name]

    return {n: groups[n] for n in sorted(groups, key=position)}

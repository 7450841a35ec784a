"""The post-training steps after a plan is applied, in one walk of the network (:class:`PostTrain`, :func:`posttrain`).

In forward order, block by block (:class:`core.posttrain.walk.Walker`), at every site of the block:

- a plan layer, with ``sequential``: built on the compressed prefix's inputs — anchored (:mod:`.anchored`) for
  ``aa_svd`` on a Linear or ungrouped conv, as the plan builds it otherwise — then, with ``bias``, its mean output
  shift from the dense layer folded into its bias (:mod:`.bias`; the anchored fit folds it itself);
- a plan layer already built (``sequential`` off), with ``bias``: the same bias correction;
- a BatchNorm, with ``batchnorm="shift"``: its running moments moved by the compressed-minus-dense difference of its
  input moments (:mod:`.batchnorm`);

then, with ``reconstruct`` steps, the block is optimised to reproduce the dense block's output (:mod:`.blocks`),
unless the block is a single layer fitted anchored: its closed form already minimises that same error (a plain stack
of convs such as SRMD's, where each Adam step would cost a whole conv's forward and backward for nothing).
``batchnorm="reestimate"`` refits every BatchNorm from scratch after the walk. Everything learns from the
calibration batches only, and nothing is random but the reconstruction's batch order, seeded.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, NamedTuple

import torch
from torch import nn

from core.errors import RankscopeError
from core.layers import set_module
from core.posttrain.anchored import Moments, anchored_layer, input_rows
from core.posttrain.batchnorm import MODES, batchnorm_paths, channel_moments, reestimate, shift_batchnorm
from core.posttrain.bias import LAYERS, channel_sum, correct_bias
from core.posttrain.blocks import BlockResult, reconstruct_block
from core.posttrain.walk import Walker, call_order, covers, main_output

ANCHORED = "aa_svd"  # the method an anchored fit produces


@dataclass(frozen=True)
class PostTrain:
    """Which post-training steps run after a plan's layers are built (module docstring), as a plan records them.

    Attributes
    ----------
    sequential : build the layers in forward order on the compressed prefix's inputs (anchored for ``aa_svd``).
    bias : fold each compressed layer's mean output shift into its bias.
    batchnorm : ``"shift"``, ``"reestimate"`` or ``"none"`` (:mod:`core.posttrain.batchnorm`).
    reconstruct : Adam steps per block of block reconstruction (0: off).
    lr : the reconstruction's learning rate.
    damping : the anchored fit's damping (as ``aa_svd``'s).
    seed : the reconstruction's batch order.
    """

    sequential: bool = True
    bias: bool = True
    batchnorm: str = "shift"
    reconstruct: int = 0
    lr: float = 1e-4
    damping: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batchnorm not in MODES:
            raise RankscopeError(f"posttrain batchnorm {self.batchnorm!r} must be one of {', '.join(MODES)}")
        if self.reconstruct < 0 or self.lr <= 0 or self.damping < 0:
            raise RankscopeError("posttrain reconstruct must be >= 0 steps, lr > 0 and damping >= 0")

    @property
    def active(self) -> bool:
        """Whether any step runs."""
        return self.sequential or self.bias or self.batchnorm != "none" or self.reconstruct > 0

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plan file holds them."""
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Any) -> "PostTrain":
        """Settings from a plan file's ``posttrain`` mapping (missing keys take their defaults).

        Raises
        ------
        RankscopeError
            Not a mapping, an unknown key, or a value out of range.
        """
        if not isinstance(doc, dict):
            raise RankscopeError("'posttrain' must map step names to values")
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(doc) - set(known))
        if unknown:
            raise RankscopeError(f"posttrain: unknown keys {', '.join(unknown)} (known: {', '.join(known)})")
        try:
            return cls(**doc)
        except TypeError as err:
            raise RankscopeError(f"posttrain: {err}") from None


NONE = PostTrain(sequential=False, bias=False, batchnorm="none", reconstruct=0)


class Entry(NamedTuple):
    """One plan layer as the walk builds it."""

    method: str
    rank: object
    build: Callable[[nn.Module, torch.Tensor | None], nn.Module]  # (dense module, its inputs or None) -> new module
    needs_inputs: bool  # whether ``build`` needs the module's inputs


@dataclass
class PostTrainReport:
    """What the walk did: layers fitted anchored, biases corrected, BatchNorms moved or refitted, blocks."""

    anchored: list[str] = field(default_factory=list)
    biases: list[str] = field(default_factory=list)
    batchnorms: int = 0
    blocks: list[BlockResult] = field(default_factory=list)

    def summary(self) -> str:
        """One line per step that ran."""
        lines = []
        if self.anchored:
            lines.append(f"sequential: {len(self.anchored)} layer(s) fitted on the compressed prefix's inputs")
        if self.biases:
            lines.append(f"bias: {len(self.biases)} mean shift(s) folded into biases")
        if self.batchnorms:
            lines.append(f"batchnorm: {self.batchnorms} BatchNorm(s) corrected")
        for b in self.blocks:
            lines.append(f"reconstruct {b.block}: relative error {b.before:.4g} -> {b.after:.4g}"
                         + ("" if b.kept else " (not lowered: weights kept)"))
        return "\n".join(lines)


def _is_anchored(module: nn.Module, method: str) -> bool:
    return method == ANCHORED and (isinstance(module, nn.Linear) or (type(module) is nn.Conv2d and module.groups == 1))


def _fit(walker: Walker, block: str, path: str, entry: Entry, settings: PostTrain, report: PostTrainReport) -> None:
    """Build the plan layer at ``path`` on the compressed prefix's inputs (module docstring) and put it in place."""
    module = walker.dense.get_submodule(path)
    if _is_anchored(module, entry.method):
        moments = None
        for (x, _), _, (xh, _), _ in walker.at(block, path):
            rows, rows_hat = input_rows(module, x[0]), input_rows(module, xh[0])
            moments = moments or Moments(rows.shape[1])
            moments.add(rows, rows_hat)
        built = anchored_layer(module, entry.rank, moments, damping=settings.damping, bias=settings.bias, name=path)
        report.anchored.append(path)
        set_module(walker.compressed, path, built)
        return
    inputs = torch.cat([xh[0] for _, _, (xh, _), _ in walker.at(block, path)]) if entry.needs_inputs else None
    set_module(walker.compressed, path, entry.build(module, inputs))
    if settings.bias:
        _correct(walker, block, path, report)


def _correct(walker: Walker, block: str, path: str, report: PostTrainReport) -> None:
    """Fold the mean output shift of the compressed layer at ``path`` into its bias."""
    channels_last = isinstance(walker.dense.get_submodule(path), nn.Linear)
    total = count = 0
    for _, out, _, out_hat in walker.at(block, path):
        (s, n), (sh, _) = channel_sum(out, channels_last), channel_sum(out_hat, channels_last)
        total, count = total + s - sh, count + n
    if correct_bias(walker.compressed.get_submodule(path), total / max(count, 1)):
        report.biases.append(path)


def _shift(walker: Walker, block: str, path: str) -> None:
    dense = compressed = 0
    for (x, _), _, (xh, _), _ in walker.at(block, path):
        dense, compressed = dense + channel_moments(x[0]), compressed + channel_moments(xh[0])
    shift_batchnorm(walker.compressed.get_submodule(path), dense, compressed)


def posttrain(dense: nn.Module, compressed: nn.Module, entries: dict[str, Entry], batches: Sequence[torch.Tensor],
              settings: PostTrain, progress: Callable[[int, int], None] | None = None) -> PostTrainReport:
    """Run ``settings``' steps on ``compressed`` (in place) against ``dense`` (module docstring).

    Parameters
    ----------
    dense : the dense model (never modified).
    compressed : a copy of it to change: with ``sequential``, still dense at the plan's layers (they are built
        here); without, the plan already applied.
    entries : the plan's layers, path -> :class:`Entry`.
    batches : calibration inputs of the model, batch by batch.
    settings : the steps.
    progress : called with ``(blocks done, blocks)``.
    """
    report = PostTrainReport()
    walker = Walker(dense, compressed, batches)
    norms = batchnorm_paths(dense) if settings.batchnorm == "shift" else []
    layers = list(entries) if settings.sequential or settings.bias else []
    sites = call_order(dense, batches[0][:1], [*layers, *norms]) if layers or norms else []
    wanted = [*sites, *(entries if settings.reconstruct else [])]
    blocks = [b for b in walker.paths if any(covers(b, w) for w in wanted)]
    for done, block in enumerate(walker.blocks(wanted), 1):
        for path in (s for s in sites if covers(block, s)):
            if path in layers and settings.sequential:
                _fit(walker, block, path, entries[path], settings, report)
            elif path in layers:
                if isinstance(walker.compressed.get_submodule(path), LAYERS + (nn.Sequential,)):
                    _correct(walker, block, path, report)
            else:
                _shift(walker, block, path)
                report.batchnorms += 1
        if settings.reconstruct and any(covers(block, p) for p in entries) and block not in report.anchored:
            dense_block = dense.get_submodule(block)
            with torch.no_grad():
                targets = [main_output(dense_block(*args, **kwargs)).detach() for args, kwargs in walker.dense_calls]
            before, after, kept = reconstruct_block(walker.compressed.get_submodule(block), walker.compressed_calls,
                                                    targets, steps=settings.reconstruct, lr=settings.lr,
                                                    seed=settings.seed + done)
            report.blocks.append(BlockResult(block, before, after, kept))
        if progress is not None:
            progress(done, len(blocks))
    if settings.batchnorm == "reestimate":
        report.batchnorms = reestimate(compressed, batches)
    return report

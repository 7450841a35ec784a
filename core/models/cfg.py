"""Model metadata, kept apart from the architectures' constructor arguments (like timm's PretrainedCfg)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelCfg:
    """What a caller needs to feed and judge a model.

    Attributes
    ----------
    name : registry name the model was created from, e.g. ``"fmnist-resnet"``.
    input_size : (C, H, W) of one input image (for a super-resolution model, which takes any size: the size its
        FLOPs, latency and memory are measured at).
    num_classes : number of output logits (``0`` for a model whose output is an image).
    mean, std : per-channel normalisation applied to inputs scaled to [0, 1].
    dataset : name of the data registry entry the model belongs to (``""`` if none).
    weights : path of the weights file loaded, or ``""`` for random init.
    card : the model card (accuracy, training command, ...) for shipped models.
    scale : output side / input side: ``1`` for classifiers, ``2`` or ``4`` for a super-resolution model, whose data
        sets make their low-resolution inputs by this factor and whose task scores at it.
    receptive_field : side, in input pixels, of the region one output pixel depends on; a super-resolution data set
        leaves out images whose low-resolution side is smaller.
    """

    name: str
    input_size: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    dataset: str = ""
    weights: str = ""
    card: dict = field(default_factory=dict, compare=False, hash=False)
    scale: int = 1
    receptive_field: int = 1

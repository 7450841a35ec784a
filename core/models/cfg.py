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
        FLOPs, latency and memory are measured at); for a language model ``(T,)``, the number of tokens of one
        input sequence (the window its data set cuts, and the length costs are measured at).
    num_classes : number of output logits (``0`` for a model whose output is an image; a language model's
        vocabulary, the logits it gives at every position).
    mean, std : per-channel normalisation applied to inputs scaled to [0, 1].
    dataset : name of the data registry entry the model belongs to (``""`` if none).
    weights : path of the weights file loaded, or ``""`` for random init.
    card : the model card (accuracy, training command, ...) for shipped models.
    scale : output side / input side: ``1`` for classifiers, ``2`` or ``4`` for a super-resolution model, whose data
        sets make their low-resolution inputs by this factor and whose task scores at it.
    receptive_field : side, in input pixels, of the region one output pixel depends on; a super-resolution data set
        leaves out images whose low-resolution side is smaller.
    vocab_size : ``0`` for a model that takes images (floats); for a language model, which takes token ids (int64,
        shape (B, T)), the number of ids: inputs are in ``[0, vocab_size)``.
    tokenizer : folder of the language model's tokenizer files (``""`` for other models): its text data sets are
        tokenised with it.
    """

    name: str
    input_size: tuple[int, ...]
    num_classes: int
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    dataset: str = ""
    weights: str = ""
    card: dict = field(default_factory=dict, compare=False, hash=False)
    scale: int = 1
    receptive_field: int = 1
    vocab_size: int = 0
    tokenizer: str = ""

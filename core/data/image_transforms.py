"""Image preprocessing for a model's input (torchvision ``transforms.v2``): evaluation resize/crop and random crops."""
from __future__ import annotations

import math

import torch
from torchvision.transforms import v2

from core.models.cfg import ModelCfg

CROP_FRACTION = 0.875  # ImageNet evaluation: resize to 256, centre-crop 224 (torchvision's and timm's default)


def to_model_input(cfg: ModelCfg) -> list[v2.Transform]:
    """PIL image -> float (C, H, W) in [0, 1] (grey for a one-channel ``cfg``), normalised with ``cfg.mean``/``cfg.std``."""
    grey = [v2.Grayscale(1)] if cfg.input_size[0] == 1 else []
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), *grey, v2.Normalize(list(cfg.mean), list(cfg.std))]


def eval_transform(cfg: ModelCfg) -> v2.Compose:
    """torchvision's ImageNet evaluation preprocessing at ``cfg``'s input size, normalised for the model.

    The shorter side is resized (bilinear, antialiased) to ``floor(size / 0.875)`` and the centre cropped to
    ``cfg.input_size``: for 224 x 224, resize 256 and crop 224, as ``MobileNet_V2_Weights.IMAGENET1K_V1.transforms()``.
    """
    _, h, w = cfg.input_size
    return v2.Compose([v2.Resize(math.floor(max(h, w) / CROP_FRACTION)), v2.CenterCrop((h, w)), *to_model_input(cfg)])


def crop_transform(cfg: ModelCfg) -> v2.Compose:
    """A random resized crop (torchvision's defaults: 8-100 % of the area, aspect 3/4-4/3) at ``cfg``'s input size,
    flipped horizontally half the time, normalised for the model; draws from torch's global generator."""
    _, h, w = cfg.input_size
    return v2.Compose([v2.RandomResizedCrop((h, w)), v2.RandomHorizontalFlip(), *to_model_input(cfg)])

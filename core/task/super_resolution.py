"""Super-resolution at a scale: a model's upscaled images against the high-resolution originals (PSNR, SSIM), and
against the uncompressed model's images (fidelity: PSNR to them, colour and brightness shift).

One task of each kind per scale, registered as ``super-resolution-x2`` / ``super-resolution-fidelity-x2`` (and x3,
x4): the border shaved is the scale, and the bicubic baseline upscales by it. Outputs and targets are RGB images
(B, 3, sH, sW) in [0, 1]; targets are the HR images whose bicubic downscale was the input (see
:mod:`core.task.images`). Metrics are computed per image on outputs rounded to 8 bits and averaged over images
(PSNR in dB, as papers report it); the losses are on the raw outputs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from core.errors import RankscopeError
from core.task.images import (
    bicubic_resize,
    from_pil,
    luma,
    psnr,
    quantise,
    shave,
    ssim,
    to_pil,
    ycbcr,
)
from core.task.metric import Metric

SCALES = (2, 3, 4)  # a task of each kind is registered for each
SSIM_WINDOW = 11  # side of SSIM's Gaussian window: the shaved images must be at least this large


def task_name(scale: int) -> str:
    """``super-resolution-x<scale>``: the task that scores a model of that scale against HR images."""
    return f"super-resolution-x{scale}"


def fidelity_name(scale: int) -> str:
    """``super-resolution-fidelity-x<scale>``: the task that scores it against the uncompressed model."""
    return f"super-resolution-fidelity-x{scale}"


def _images(outputs: torch.Tensor, targets: torch.Tensor | None, task: str, scale: int, what: str) -> torch.Tensor:
    """``outputs`` as float (B, 3, H, W) images of ``targets``' shape (the HR images or the original's outputs)."""
    if not isinstance(outputs, torch.Tensor) or outputs.ndim != 4 or outputs.shape[1] != 3:
        shape = tuple(outputs.shape) if isinstance(outputs, torch.Tensor) else type(outputs).__name__
        raise RankscopeError(f"the {task} task scores RGB images (batch, 3, height, width), but the outputs are {shape}")
    if targets is None or targets.shape != outputs.shape:
        got = "none" if targets is None else f"shape {tuple(targets.shape)}"
        raise RankscopeError(f"the {task} task compares the outputs {tuple(outputs.shape)} with {what} of the same shape, "
                             f"but got {got} (a x{scale} model on a super-resolution data set: set5-like, sr-patches)")
    if min(outputs.shape[-2:]) - 2 * scale < SSIM_WINDOW:
        raise RankscopeError(f"the {task} task shaves {scale} border pixels and needs {SSIM_WINDOW} left, more than "
                             f"outputs of {outputs.shape[-2]}x{outputs.shape[-1]} have")
    return outputs.detach().float()


@dataclass
class ImageMeans:
    """Running sums of per-image values of a task at ``scale``; :meth:`result` gives each one's mean over the images."""

    scale: int
    task: str  # the task's name, for messages
    seen: int = 0
    sums: dict[str, float] = field(default_factory=dict)

    def count(self, values: dict[str, torch.Tensor]) -> None:
        """Add one batch's (B,) values of each metric."""
        for name, per_image in values.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(per_image.double().sum())
        self.seen += len(next(iter(values.values())))

    def result(self) -> dict[str, float]:
        """Each metric's mean over the images counted, in the order they were given."""
        if not self.seen:
            raise RankscopeError(f"the {self.task} task has no images to score")
        return {name: total / self.seen for name, total in self.sums.items()}


class SuperResolutionTally(ImageMeans):
    """Y-PSNR, Y-SSIM and L1 of each image against its HR image: ``psnr`` (dB), ``ssim``, ``l1``."""

    def add(self, outputs: torch.Tensor, targets: torch.Tensor, reference_outputs: torch.Tensor | None = None) -> None:
        """Count one batch: ``outputs`` and the HR ``targets``, both (B, 3, sH, sW) in [0, 1]; ``reference_outputs`` is unused.

        Raises
        ------
        RankscopeError
            Outputs that are not RGB images, targets of another shape (labels, or a model of another scale).
        """
        out = _images(outputs, targets, self.task, self.scale, "high-resolution targets")
        hr = targets.detach().float()
        y_out, y_hr = shave(luma(quantise(out)), self.scale), shave(luma(quantise(hr)), self.scale)  # (B, H', W')
        self.count({"psnr": psnr(y_out, y_hr), "ssim": torch.tensor(ssim(y_out, y_hr), dtype=torch.float64),
                    "l1": (out - hr).abs().flatten(1).mean(1)})


class SuperResolutionFidelityTally(ImageMeans):
    """Each image against the original model's: ``psnr_to_original`` (dB), ``colour_shift``, ``brightness_shift``
    (8-bit levels) and ``l1_to_original``."""

    def add(self, outputs: torch.Tensor, targets: torch.Tensor, reference_outputs: torch.Tensor | None = None) -> None:
        """Count one batch of compressed ``outputs`` against the original's ``reference_outputs``; ``targets`` is unused.

        Raises
        ------
        RankscopeError
            No reference outputs, or outputs that are not RGB images of the reference's shape.
        """
        out = _images(outputs, reference_outputs, self.task, self.scale, "the original model's outputs")
        ref = reference_outputs.detach().float()
        mine, theirs = shave(ycbcr(quantise(out)), self.scale), shave(ycbcr(quantise(ref)), self.scale)  # (B, 3, H', W')
        shift = (mine - theirs).mean(dim=(2, 3))  # (B, 3): mean Y, Cb, Cr difference of each image, 8-bit levels
        self.count({"psnr_to_original": psnr(mine[:, 0], theirs[:, 0]), "colour_shift": shift[:, 1:].norm(dim=1),
                    "brightness_shift": shift[:, 0].abs(), "l1_to_original": (out - ref).abs().flatten(1).mean(1)})


class SuperResolutionTask:
    """Score a super-resolution model's images against the high-resolution originals, at one ``scale``.

    Metrics, each the mean over images:

    - ``psnr``: PSNR of the Y channel (BT.601, MATLAB's ``rgb2ycbcr``) in dB, the output rounded to 8 bits, ``scale``
      border pixels shaved; the headline.
    - ``ssim``: SSIM of the same Y channels (scikit-image, the settings of Wang et al. 2004).
    - ``l1``: mean |output − HR| over the RGB values in [0, 1] of the raw output, which is the loss.
    """

    metrics = (
        Metric("psnr", True, "Y-channel PSNR against the high-resolution image, border shaved, in dB (mean over images)",
               label="PSNR (dB)"),
        Metric("ssim", True, "Y-channel SSIM against the high-resolution image, border shaved (mean over images)",
               label="SSIM"),
        Metric("l1", False, "mean |output − high-resolution image| of the RGB values in [0, 1]", label="L1"),
    )
    headline = "psnr"
    loss_metric = "l1"
    needs_labels = True  # the targets are the HR images
    needs_reference = False

    def __init__(self, scale: int) -> None:
        self.scale = scale
        self.name = task_name(scale)
        self.fidelity = fidelity_name(scale)  # the task that compares with the uncompressed model at this scale

    def tally(self) -> SuperResolutionTally:
        """An empty :class:`SuperResolutionTally`."""
        return SuperResolutionTally(self.scale, self.name)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, reference_outputs: torch.Tensor | None = None) -> torch.Tensor:
        """Mean |outputs − targets| (L1 to the HR images); ``reference_outputs`` is unused."""
        _images(outputs, targets, self.name, self.scale, "high-resolution targets")
        return (outputs.float() - targets.float()).abs().mean()

    def baseline(self) -> nn.Module:
        """The bicubic upscale by :attr:`scale`, the row every model of this task is compared with."""
        return BicubicUpscale(self.scale)


class SuperResolutionFidelityTask:
    """Compare a compressed super-resolution model's images with the uncompressed model's, at one ``scale``.

    Metrics, each the mean over images, on both outputs rounded to 8 bits with ``scale`` border pixels shaved:

    - ``psnr_to_original``: Y-channel PSNR against the original's image in dB (:data:`~core.task.images.PSNR_CAP_DB`
      where they are identical); the headline.
    - ``colour_shift``: ‖(mean ΔCb, mean ΔCr)‖ of the image, BT.601 chroma in 8-bit levels: a tint the compression added.
    - ``brightness_shift``: |mean ΔY| of the image in 8-bit levels.
    - ``l1_to_original``: mean |output − original's output| of the raw RGB values, which is the loss (distillation).
    """

    metrics = (
        Metric("psnr_to_original", True, "Y-channel PSNR against the uncompressed model's image, in dB (100: identical)",
               label="PSNR to original (dB)"),
        Metric("colour_shift", False, "length of the mean (Cb, Cr) difference to the uncompressed model's image, "
               "in 8-bit BT.601 levels", label="colour shift"),
        Metric("brightness_shift", False, "|mean Y difference| to the uncompressed model's image, in 8-bit levels",
               label="brightness shift"),
        Metric("l1_to_original", False, "mean |output − uncompressed model's output| of the RGB values in [0, 1]",
               label="L1 to original"),
    )
    headline = "psnr_to_original"
    loss_metric = "l1_to_original"
    needs_labels = False
    needs_reference = True

    def __init__(self, scale: int) -> None:
        self.scale = scale
        self.name = self.fidelity = fidelity_name(scale)

    def tally(self) -> SuperResolutionFidelityTally:
        """An empty :class:`SuperResolutionFidelityTally`."""
        return SuperResolutionFidelityTally(self.scale, self.name)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, reference_outputs: torch.Tensor | None = None) -> torch.Tensor:
        """Mean |outputs − reference_outputs|; ``targets`` is unused."""
        _images(outputs, reference_outputs, self.name, self.scale, "the original model's outputs")
        return (outputs.float() - reference_outputs.detach().float()).abs().mean()


class BicubicUpscale(nn.Module):
    """PIL's bicubic upscale by ``scale`` of each 8-bit image of a batch: the baseline of super-resolution.

    The inputs are rounded to 8 bits first (the data sets' inputs are 8-bit already); no gradient flows.
    """

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]  # x: (B, 3, H, W) in [0, 1]
        size = (w * self.scale, h * self.scale)
        return torch.stack([from_pil(bicubic_resize(to_pil(image), size)) for image in x]).to(x.device)  # (B, 3, sH, sW)

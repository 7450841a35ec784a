"""One call that measures everything about a model, and a per-layer table of where its FLOPs go."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import Subset

from core.models.cfg import ModelCfg
from core.profile.checks import check_batch, check_device, check_runtime
from core.profile.context import prepared, torch_threads
from core.profile.counts import FLOP_CONVENTION, count_flops, count_params, model_size_mb
from core.profile.latency import LatencyResult, measure_latency
from core.profile.memory import MemoryResult, measure_memory
from core.profile.onnx_runtime import exported_onnx, measure_ort_latency, measure_ort_memory
from core.profile.quality import evaluate, evaluate_tasks, has_labels, task_for
from core.task import LanguageModellingTask, Scores, SuperResolutionTask, Task, get_task

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class ProfileResult:
    """What a model costs and how well it does; flat, so :meth:`to_dict` is JSON as it stands.

    Attributes
    ----------
    model : the registry name from the model's cfg.
    params : parameter elements (shared ones once).
    flops : FLOPs of one sample, counted at batch 1, in the convention ``flop_convention``.
    latency_ms, latency_p90_ms : median and 90th percentile of a forward pass at ``batch``.
    peak_memory_mb : model + input + forward-pass peak at ``batch`` (see :mod:`core.profile.memory`).
    peak_activation_mb : the forward pass's own growth.
    memory_method : how memory was measured: ``"child-rss"``, ``"torch-profiler"`` or ``"cuda-allocator"``.
    model_size_mb : bytes of parameters and buffers / 10^6.
    accuracy, top5, loss : the classification task: top-1, top-5 and mean cross-entropy against the labels over
        ``samples`` examples; ``None`` without a labelled dataset (``top5`` also with 5 classes or fewer).
    agreement, top5_overlap, kl, relative_error : the fidelity task (:mod:`core.task.fidelity`) against the
        reference model (the uncompressed one; the model itself when none is given) on the same examples, labels
        or not; ``None`` without a dataset, and for a super-resolution model.
    psnr, ssim, l1 : a super-resolution model on its data set (:mod:`core.task.super_resolution`): Y-channel PSNR
        (dB) and SSIM against the high-resolution images, ``scale`` border pixels shaved, the output rounded to 8
        bits, and the mean |output − HR| of the raw RGB values in [0, 1]; each the mean over the images. ``None``
        for other models.
    bicubic_psnr, bicubic_ssim : the same PSNR and SSIM of PIL's bicubic upscale of the same inputs, the baseline.
    psnr_to_original, colour_shift, brightness_shift : super-resolution fidelity to the reference model on the same
        images: Y-PSNR against its images (dB; 100 where identical), the length of the mean (Cb, Cr) difference
        and the |mean Y difference| (8-bit BT.601 levels), each the mean over the images.
    perplexity, nll, token_accuracy : a language model on its text windows (:mod:`core.task.language`): exp of the
        mean next-token negative log-likelihood, that mean (nats), and the fraction of tokens whose top-1 is the next
        token, over every token of the windows evaluated; ``agreement`` and ``kl`` are then the language-fidelity
        task's, per token (top-1 next-token agreement with the reference, mean KL(reference ‖ model)). ``None`` for
        other models.
    samples : examples evaluated (``0`` without a dataset; windows of a text). Quality is always computed with the
        torch model.
    batch, threads, device, runtime : the settings the costs were measured under.
    """

    model: str
    params: int
    flops: int
    flop_convention: str
    latency_ms: float
    latency_p90_ms: float
    peak_memory_mb: float
    peak_activation_mb: float
    memory_method: str
    model_size_mb: float
    accuracy: float | None
    top5: float | None
    loss: float | None
    agreement: float | None
    top5_overlap: float | None
    kl: float | None
    relative_error: float | None
    psnr: float | None
    ssim: float | None
    l1: float | None
    bicubic_psnr: float | None
    bicubic_ssim: float | None
    psnr_to_original: float | None
    colour_shift: float | None
    brightness_shift: float | None
    perplexity: float | None
    nll: float | None
    token_accuracy: float | None
    samples: int
    batch: int
    threads: int
    device: str
    runtime: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def example_input(cfg: ModelCfg, batch: int = 1) -> torch.Tensor:
    """A seeded batch of shape ``(batch, *cfg.input_size)``: standard-normal images, or for a language model
    (``cfg.vocab_size``) token ids drawn uniformly from its vocabulary, int64."""
    generator = torch.Generator().manual_seed(0)
    if cfg.vocab_size:
        return torch.randint(0, cfg.vocab_size, (batch, *cfg.input_size), generator=generator)
    return torch.randn(batch, *cfg.input_size, generator=generator)


def profile_model(
    model: nn.Module,
    cfg: ModelCfg,
    *,
    dataset: Any = None,
    reference: nn.Module | None = None,
    samples: int | None = None,
    batch: int = 1,
    threads: int | None = None,
    device: str | torch.device = "cpu",
    runtime: str = "torch",
    progress: bool = False,
    repeats: int = 20,
) -> ProfileResult:
    """Count, time, measure and (given a dataset) evaluate ``model``.

    Parameters
    ----------
    model : the module; it is put in eval mode on ``device`` while measured, then restored.
    cfg : its :class:`~core.models.ModelCfg` (input size and name).
    dataset : optional data set for :func:`~core.profile.quality.evaluate` under :func:`profile_tasks`: classification
        where it has labels and fidelity to ``reference`` always, or a super-resolution data set's task, its fidelity
        counterpart and the bicubic baseline.
    reference : the uncompressed model the fidelity metrics compare with (default: ``model`` itself).
    samples : evaluate only the first ``samples`` examples of ``dataset`` (``None``: all).
    batch : batch size for latency and memory (FLOPs are always per sample at batch 1).
    threads : intra-op threads, ``1..os.cpu_count()``; ``None`` keeps torch's current count.
    device : ``"cpu"`` or ``"cuda[:N]"``.
    runtime : ``"torch"`` or ``"onnxruntime"`` (CPU only) for latency and memory.
    progress : a progress bar during evaluation.
    repeats : timed forward passes for latency.

    Raises
    ------
    RankscopeError
        Threads outside ``1..cpu_count``, ``batch < 1``, CUDA asked for but absent, an unknown runtime,
        a model ONNX cannot export.
    """
    batch = check_batch(batch)
    dev = check_device(device)
    runtime = check_runtime(runtime, dev)
    with torch_threads(threads) as used:
        with prepared(model, dev):
            flops = count_flops(model, example_input(cfg, 1).to(dev))
        x = example_input(cfg, batch)
        latency, memory = _costs(model, x, used, dev, runtime, repeats)
        quality: dict[str, Scores] = {}
        if dataset is not None:
            data = dataset if samples is None else Subset(dataset, range(min(samples, len(dataset))))
            tasks = profile_tasks(data)
            quality = dict(zip(tasks, evaluate_tasks(model, data, list(tasks.values()), reference=reference or model,
                                                     device=dev, progress=progress)))
            if "sr" in tasks:  # the bicubic row: the same task on the baseline's images
                quality["bicubic"] = evaluate(tasks["sr"].baseline(), data, task=tasks["sr"], device=dev)
    return ProfileResult(
        model=cfg.name,
        params=count_params(model),
        flops=int(flops.per_sample),
        flop_convention=FLOP_CONVENTION,
        latency_ms=latency.median_ms,
        latency_p90_ms=latency.p90_ms,
        peak_memory_mb=memory.peak_mb,
        peak_activation_mb=memory.peak_activation_mb,
        memory_method=memory.method,
        model_size_mb=model_size_mb(model),
        **_quality_fields(quality),
        batch=batch,
        threads=used,
        device=str(dev),
        runtime=runtime,
    )


def _costs(
    model: nn.Module, x: torch.Tensor, threads: int, device: torch.device, runtime: str, repeats: int
) -> tuple[LatencyResult, MemoryResult]:
    if runtime == "onnxruntime":
        with exported_onnx(model, x) as path:
            return (
                measure_ort_latency(path, x, threads=threads, repeats=repeats),
                measure_ort_memory(path, x, threads=threads),
            )
    return (
        measure_latency(model, x, threads=threads, device=device, repeats=repeats),
        measure_memory(model, x, threads=threads, device=device),
    )


def profile_tasks(dataset: Any) -> dict[str, Task]:
    """What :func:`profile_model` scores on ``dataset``, by role: ``"sr"`` and ``"sr-fidelity"`` for a data set whose
    own task is super-resolution, ``"lm"`` and ``"fidelity"`` (its language-fidelity counterpart, whose ``agreement``
    and ``kl`` fill the same keys) for a text data set, else ``"classification"`` and ``"fidelity"`` for labelled
    data, ``"fidelity"`` alone for unlabelled data."""
    own = task_for(dataset)
    if isinstance(own, SuperResolutionTask):
        return {"sr": own, "sr-fidelity": get_task(own.fidelity)}
    if isinstance(own, LanguageModellingTask):
        return {"lm": own, "fidelity": get_task(own.fidelity)}
    roles = ("classification", "fidelity") if has_labels(dataset) else ("fidelity",)
    return {role: get_task(role) for role in roles}


# result key -> (the role of the scores it comes from, see profile_tasks; the metric's name in them)
QUALITY_KEYS = {
    "accuracy": ("classification", "top1"), "top5": ("classification", "top5"), "loss": ("classification", "loss"),
    "agreement": ("fidelity", "agreement"), "top5_overlap": ("fidelity", "top5_overlap"), "kl": ("fidelity", "kl"),
    "relative_error": ("fidelity", "relative_error"),
    "psnr": ("sr", "psnr"), "ssim": ("sr", "ssim"), "l1": ("sr", "l1"),
    "bicubic_psnr": ("bicubic", "psnr"), "bicubic_ssim": ("bicubic", "ssim"),
    "psnr_to_original": ("sr-fidelity", "psnr_to_original"), "colour_shift": ("sr-fidelity", "colour_shift"),
    "brightness_shift": ("sr-fidelity", "brightness_shift"),
    "perplexity": ("lm", "perplexity"), "nll": ("lm", "nll"), "token_accuracy": ("lm", "token_accuracy"),
}


def _quality_fields(quality: dict[str, Scores]) -> dict[str, Any]:
    """The result's quality keys from the scores by role (``None`` where not measured), and ``samples``."""
    out: dict[str, Any] = {key: quality[role].get(name) if role in quality else None
                           for key, (role, name) in QUALITY_KEYS.items()}
    return out | {"samples": next(iter(quality.values())).samples if quality else 0}


def layer_table(model: nn.Module, cfg: ModelCfg) -> pd.DataFrame:
    """One row per leaf module with parameters of its own, in ``named_modules`` order.

    Columns: ``name, type, weight_shape, params, flops, flops_share``. ``weight_shape`` is the shape of
    ``weight`` (of the largest own parameter if there is no ``weight``); ``flops`` is the module's FLOPs for
    one sample at batch 1 (every call, if it runs more than once) and ``flops_share`` its fraction of the
    model's total. Shares need not sum to 1: FLOPs outside weighted leaves (attention's matmuls, pooling
    in a parent's forward) belong to no row.
    """
    import pandas as pd  # not at the top: each memory-measuring child imports core.profile, pandas adds 0.4-1.3 s to it

    with prepared(model, torch.device("cpu")):
        flops = count_flops(model, example_input(cfg, 1))
    rows = []
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if not own or next(module.children(), None) is not None:
            continue
        weight = getattr(module, "weight", None)
        shape = weight.shape if isinstance(weight, torch.Tensor) else max(own, key=torch.Tensor.numel).shape
        module_flops = flops.by_module.get(name, 0)
        rows.append({
            "name": name,
            "type": type(module).__name__,
            "weight_shape": tuple(shape),
            "params": sum(p.numel() for p in own),
            "flops": module_flops,
            "flops_share": module_flops / flops.total if flops.total else 0.0,
        })
    columns = ["name", "type", "weight_shape", "params", "flops", "flops_share"]
    return pd.DataFrame(rows, columns=columns)

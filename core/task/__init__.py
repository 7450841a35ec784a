"""Tasks: how model outputs are scored (named metrics, a headline, a streaming tally) and the loss to minimise.

``get_task("classification")`` scores logits against labels, ``get_task("fidelity")`` against the
uncompressed model's logits on the same inputs; ``get_task("super-resolution-x2")`` scores x2 upscaled images
against the high-resolution originals (PSNR, SSIM) and ``get_task("super-resolution-fidelity-x2")`` against the
uncompressed model's images; ``get_task("language-modelling")`` scores a causal LM's next-token logits against the
text (perplexity) and ``get_task("language-fidelity")`` against the uncompressed model's (KL, top-1 agreement).
"""
from core.task.base import Tally, Task
from core.task.classification import ClassificationTask
from core.task.fidelity import FidelityTask
from core.task.language import LanguageFidelityTask, LanguageModellingTask
from core.task.metric import Metric
from core.task.registry import get_task, list_tasks, register_task
from core.task.scores import Scores, scores_of
from core.task.super_resolution import BicubicUpscale, SuperResolutionFidelityTask, SuperResolutionTask

__all__ = ["BicubicUpscale", "ClassificationTask", "FidelityTask", "LanguageFidelityTask", "LanguageModellingTask", "Metric",
           "Scores", "SuperResolutionFidelityTask", "SuperResolutionTask", "Tally", "Task", "get_task", "list_tasks",
           "register_task", "scores_of"]

"""Tasks: how model outputs are scored (named metrics, a headline, a streaming tally) and the loss to minimise.

``get_task("classification")`` scores logits against labels, ``get_task("fidelity")`` against the
uncompressed model's logits on the same inputs.
"""
from core.task.base import Tally, Task
from core.task.classification import ClassificationTask
from core.task.fidelity import FidelityTask
from core.task.metric import Metric
from core.task.registry import get_task, list_tasks, register_task
from core.task.scores import Scores, scores_of

__all__ = ["ClassificationTask", "FidelityTask", "Metric", "Scores", "Tally", "Task", "get_task", "list_tasks",
           "register_task", "scores_of"]

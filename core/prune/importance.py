"""Channel importance scores by name, and the gradients the data-aware ones read.

``l1``      group L1 magnitude of the weights (Li et al., 2017): ``tp.importance.MagnitudeImportance(p=1)``.
``taylor``  first-order Taylor, ``|w * dL/dw|`` summed per channel (Molchanov et al., 2019).
``hessian`` Optimal Brain Damage, ``w^2 * H_diag`` per channel, with the Hessian's diagonal taken as the
            mean squared per-sample gradient (LeCun et al., 1989; tp's ``GroupHessianImportance``).
``lamp``    LAMP (Lee et al., 2021): squared magnitude divided by the sum of all larger ones in the layer.

Each score sums (averages) over every layer of a Torch-Pruning group, so a residual group is ranked
by all the layers that lose the channel. With a density per group (local pruning) LAMP's normalisation
is monotone inside the group, so it keeps the same channels as an L2 magnitude score.

References
----------
LeCun, Denker and Solla, "Optimal Brain Damage", NeurIPS 1989.
Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017, arXiv:1608.08710.
Molchanov et al., "Importance Estimation for Neural Network Pruning", CVPR 2019, arXiv:1906.10771.
Lee et al., "Layer-adaptive Sparsity for the Magnitude-based Pruning", ICLR 2021, arXiv:2010.07611.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn
from torch.func import functional_call, grad, vmap

from core.errors import RankscopeError, close_matches_hint
from core.profile.context import prepared

SCORES = ("l1", "taylor", "hessian", "lamp")
_GRADIENT_SCORES = ("taylor", "hessian")


def check_score(name: str) -> str:
    """``name`` if it is one of :data:`SCORES`, else :class:`RankscopeError` naming them."""
    if name not in SCORES:
        raise RankscopeError(f"unknown pruning score {name!r}" + close_matches_hint(name, list(SCORES)) + f"; known: {', '.join(SCORES)}")
    return name


def make_importance(name: str) -> tp.importance.Importance:
    """A Torch-Pruning importance object for score ``name`` (``l1``, ``taylor``, ``hessian`` or ``lamp``).

    ``taylor`` and ``hessian`` read ``param.grad`` of the layers they score: fill it with
    :func:`score_gradients` first (what :func:`core.prune.prune_model` does).

    Raises
    ------
    RankscopeError
        An unknown name.
    """
    factories = {
        "l1": lambda: tp.importance.MagnitudeImportance(p=1),
        "taylor": tp.importance.GroupTaylorImportance,
        "hessian": tp.importance.GroupHessianImportance,
        "lamp": tp.importance.LAMPImportance,
    }
    return factories[check_score(name)]()


def needs_gradients(name: str) -> bool:
    """Whether score ``name`` needs labelled calibration data (its gradients); :class:`RankscopeError` if unknown."""
    return check_score(name) in _GRADIENT_SCORES


def score_gradients(model: nn.Module, name: str, data: Iterable[tuple[torch.Tensor, torch.Tensor]] | None) -> dict[str, torch.Tensor]:
    """What score ``name`` expects in each parameter's ``.grad``, keyed by ``named_parameters`` name.

    ``taylor``: the mean over batches of the gradient of the mean cross-entropy. ``hessian``: the mean
    over samples of the squared per-sample gradient (the empirical Fisher, OBD's diagonal Hessian).
    ``l1``/``lamp``: ``{}``. The model runs in eval mode (BatchNorm on its running statistics) through
    ``torch.func``, so neither its parameters, buffers, ``.grad`` nor modes change.

    Parameters
    ----------
    model : a classifier returning logits.
    name : the score.
    data : ``(images, labels)`` batches, e.g. a few of the training split; ``None`` for ``l1``/``lamp``.

    Raises
    ------
    RankscopeError
        An unknown score, or a gradient score without data.
    """
    if not needs_gradients(name):
        return {}
    batches = list(data or [])
    if not batches:
        raise RankscopeError(f"pruning score {name!r} ranks channels by gradients: pass data= a few (images, labels) "
                             "batches of training data")
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def loss(params: dict[str, torch.Tensor], images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, (params, buffers), (images,)), labels)

    def sample_loss(params: dict[str, torch.Tensor], image: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return loss(params, image[None], label[None])  # one sample as a batch of one

    # tp's GroupHessianImportance.accumulate_grad (1.6) keeps only the last sample's squared gradient
    # (it looks parameters up by name in a dict keyed by tensor), so the per-sample mean is taken here.
    per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0), chunk_size=32)
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    count = 0
    first = next(iter(params.values()), None)
    home = first.device if first is not None else torch.device("cpu")
    with prepared(model, home), warnings.catch_warnings():
        # functorch has no batching rule for CPU fused attention and loops over samples instead; correct, only slower
        warnings.filterwarnings("ignore", message="There is a performance drop", category=UserWarning)
        for images, labels in batches:
            images, labels = images.to(home), torch.as_tensor(labels, device=home).long()
            if name == "taylor":
                grads, count = grad(loss)(params, images, labels), count + 1
            else:
                grads, count = {n: (g ** 2).sum(0) for n, g in per_sample(params, images, labels).items()}, count + len(labels)
            for n, g in grads.items():
                total[n] += g
    return {n: t / count for n, t in total.items()}

"""Channel ordering: a smooth path by 2-opt that leaves the network's function unchanged."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from core.resample.order import order_model, two_opt_path


@pytest.mark.parametrize("name", ["fmnist-resnet", "fmnist-vit", "fmnist-capsnet", pytest.param("timm:resnet18", marks=pytest.mark.slow)])  # resnet18: ~4 s
def test_permutation_keeps_outputs(zoo, name):
    model, example, groups = zoo[name]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ordered, perms = order_model(model, groups)
    with torch.no_grad():
        torch.testing.assert_close(ordered(example), model(example), atol=1e-5, rtol=1e-5)
    assert set(perms) == set(groups) and all(sorted(p) == list(range(groups[n].size)) for n, p in perms.items())
    assert any((p != np.arange(len(p))).any() for p in perms.values())  # something was reordered
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # original untouched


def test_two_opt_recovers_a_curve():
    """Points along a curve, shuffled: the path found follows the curve (up to direction)."""
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 60)
    points = np.stack([np.cos(3 * t), np.sin(3 * t), t], 1)
    shuffle = rng.permutation(60)
    pts = points[shuffle]
    dist = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    path = shuffle[two_opt_path(dist)]
    assert list(path) in (list(range(60)), list(range(59, -1, -1)))


def test_two_opt_512_channels_is_fast():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((512, 64)).cumsum(0)[rng.permutation(512)]  # a shuffled random walk
    dist = np.linalg.norm(x[:, None] - x[None], axis=-1)
    start = time.perf_counter()
    path = two_opt_path(dist)
    seconds = time.perf_counter() - start
    assert sorted(path) == list(range(512))
    length = lambda p: dist[p[:-1], p[1:]].sum()  # noqa: E731
    assert length(path) < 0.5 * length(np.arange(512))
    assert seconds < 2.0  # about 0.3 s alone on one core; the margin absorbs a loaded CI machine

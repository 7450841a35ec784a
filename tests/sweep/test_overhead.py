"""ray_overhead: both paths timed on their second run of the same sweep, the tables equal bit for bit."""
from __future__ import annotations

import pytest

from core.errors import RankscopeError
from core.sweep.overhead import ray_overhead

pytestmark = pytest.mark.slow  # starts a local Ray instance: some 20 s here


def test_the_overhead_of_a_small_sweep_on_one_cpu(resnet, subset):
    [overhead] = ray_overhead(resnet[0], subset, cpus=(1,), threads=1, layers=["fc"], points=2, batch_size=32)
    assert (overhead.points, overhead.rows, overhead.cpus, overhead.threads) == (2, 4, 1, 1)  # model, dense fc, 2 points
    assert overhead.local_s > 0 and overhead.ray_s > 0 and overhead.startup_s > overhead.ray_s
    assert overhead.per_point_s == pytest.approx((overhead.ray_s - overhead.local_s) / 2)
    assert "2 points (4 rows): in process" in overhead.summary()


def test_ray_already_running_here_is_refused(resnet, subset, monkeypatch):
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    with pytest.raises(RankscopeError, match="call it with Ray not initialised"):
        ray_overhead(resnet[0], subset, cpus=(1,), layers=["fc"], points=1)

"""The Ray executor: the in-process table bit for bit on a local 2-CPU Ray instance, a worker killed mid-sweep,
an address that does not answer, and Ray missing."""
from __future__ import annotations

import copy
import logging
import os
import signal
from pathlib import Path

import pandas as pd
import pytest
import ray

from core.cli import main
from core.errors import RankscopeError
from core.profile.context import torch_threads
from core.sweep import DENSE, MODEL, PointKey, RayExecutor, SweepCache, distributed, read_table, sweep, sweep_grid
from core.sweep.engine import sweep_groups
from core.sweep.interval import EarlyStop

pytestmark = pytest.mark.slow  # a local Ray instance: about 25 s here; make test runs it, the fast suite does not

GRID = {"layers": ["layer3.0.conv2", "fc"], "points": 3, "batch_size": 32}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray instance for the module (two CPUs: two one-thread tasks at a time), used by every executor."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_table(resnet, subset) -> pd.DataFrame:
    with torch_threads(1):
        return sweep(resnet[0], subset, **GRID)


def test_ray_gives_the_in_process_table_bit_for_bit(resnet, subset, local_table, tmp_path):
    calls: list[tuple[int, int]] = []
    cache = SweepCache("fashion-mnist:64:0", tmp_path)
    with torch_threads(1):
        table = sweep(resnet[0], subset, executor="ray", cache=cache, progress=lambda d, t: calls.append((d, t)), **GRID)
    pd.testing.assert_frame_equal(table, local_table, check_exact=True)
    assert calls == [(i, 9) for i in range(1, 10)]  # model, 2 dense rows, 6 points: each counted once
    # the cache holds what was streamed back: a second sweep reads it all, on any executor
    again = sweep(resnet[0], subset, cache=cache, progress=lambda d, t: pytest.fail("a cached row was recomputed"), **GRID)
    pd.testing.assert_frame_equal(again, local_table, check_exact=True)


class KillOnce:
    """A forward pre-hook that kills its process the first time it runs anywhere but in the test's own process."""

    def __init__(self, marker: Path) -> None:
        self.marker, self.driver = marker, os.getpid()

    def __call__(self, module, args) -> None:
        if os.getpid() != self.driver and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_worker_is_rerun_and_no_point_is_lost_or_counted_twice(resnet, subset, local_table, tmp_path):
    model = copy.deepcopy(resnet[0])
    marker = tmp_path / "killed"
    model.get_submodule("fc").register_forward_pre_hook(KillOnce(marker))  # every group's evaluation runs fc
    calls: list[tuple[int, int]] = []
    cache = SweepCache("fashion-mnist:64:0", tmp_path / "cache")
    with torch_threads(1):
        table = sweep(model, subset, executor=RayExecutor(retries=2), cache=cache,
                      progress=lambda d, t: calls.append((d, t)), **GRID)
    assert marker.is_file() and int(marker.read_text()) != os.getpid()  # a worker did die
    pd.testing.assert_frame_equal(table, local_table, check_exact=True)
    assert calls == [(i, 9) for i in range(1, 10)]
    files = sorted((tmp_path / "cache").glob("*.csv"))
    rows = pd.concat([read_table(f) for f in files], ignore_index=True)
    assert len(rows) == 9 and not rows.duplicated(["layer", "method", "rank"]).any()


def test_an_address_that_does_not_answer_is_one_line_and_writes_nothing(resnet, subset, tmp_path, capsys, monkeypatch):
    cache = SweepCache("fashion-mnist:64:0", tmp_path / "cache")
    with pytest.raises(RankscopeError, match=r"cannot reach the Ray cluster at 127\.0\.0\.1:1"):
        sweep(resnet[0], subset, executor=RayExecutor("127.0.0.1:1"), cache=cache, **GRID)
    assert not (tmp_path / "cache").exists()
    monkeypatch.chdir(tmp_path)
    args = ["sweep", "fmnist-resnet", "--layers", "fc", "--points", "2", "--samples", "16", "--out", "t.csv"]
    assert main([*args, "--executor", "ray", "--address", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach the Ray cluster at 127.0.0.1:1" in err[0]
    assert not (tmp_path / ".rankscope-cache").exists() and not (tmp_path / "t.csv").exists()


@pytest.mark.parametrize(("flags", "message"), [
    (["--address", "auto"], "--address is where a Ray cluster runs: give it with --executor ray"),
    (["--executor", "ray", "--proxy", "energy"], "--executor ray computes the exact sweep"),
    (["--executor", "ray", "--address", "nowhere"], "Ray address 'nowhere' must be 'auto' or HOST:PORT"),
])
def test_bad_executor_flags_are_one_line_and_exit_2(flags, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "fmnist-resnet", "--layers", "fc", "--samples", "16", *flags, "--out", "t.csv"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_without_ray_the_error_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(distributed.importlib.util, "find_spec", lambda name, *a, **k: None)
    with pytest.raises(RankscopeError, match=r"pip install 'rankscope\[ray\]'"):
        RayExecutor()
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "fmnist-resnet", "--executor", "ray", "--out", "t.csv"]) == 2
    assert "pip install 'rankscope[ray]'" in capsys.readouterr().err


def test_the_baseline_rows_are_the_first_group_and_each_layer_one_group(resnet):
    grid = sweep_grid(resnet[0], GRID["layers"], None, 3)
    baseline = [PointKey(MODEL, DENSE, ""), PointKey("layer3.0.conv2", DENSE, ""), PointKey("fc", DENSE, "")]
    groups = sweep_groups(baseline + [p.key for p in grid], {})
    assert [g.layer for g in groups] == [MODEL, "layer3.0.conv2", "fc"]
    assert groups[0].keys == tuple(baseline) and [len(g.keys) for g in groups[1:]] == [3, 3]


def test_an_early_stopped_sweep_on_ray_is_the_in_process_one(resnet, subset):
    early = EarlyStop(0.05)
    with torch_threads(1):
        local = sweep(resnet[0], subset, early_stop=early, **GRID)
        remote = sweep(resnet[0], subset, executor="ray", early_stop=early, **GRID)
    pd.testing.assert_frame_equal(remote, local, check_exact=True)  # each worker scores the dense model once itself
    assert (local["samples"] < len(subset)).any()  # fc at rank 1 stopped after its first batch

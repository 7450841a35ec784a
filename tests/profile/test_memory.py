"""Peak memory against forward passes that allocate a known amount."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from core.errors import RankscopeError
from core.profile import measure_memory, model_size_mb
from tests.profile.helpers import MB, Allocates

BIG_MB = 200


@pytest.mark.slow  # a spawned child imports torch
def test_child_rss_sees_a_known_allocation():
    result = measure_memory(Allocates(BIG_MB), torch.zeros(1, 4), threads=1)
    assert result.method == "child-rss"
    assert BIG_MB * 0.8 <= result.peak_activation_mb <= BIG_MB * 1.5
    assert result.peak_mb >= result.peak_activation_mb
    assert result.peak_rss_mb > result.peak_mb  # the whole child also holds the interpreter and torch
    assert (result.device, result.batch_size, result.runtime) == ("cpu", 1, "torch")


@pytest.mark.slow  # a spawned child imports torch
def test_child_rss_of_a_trivial_module_is_small():
    result = measure_memory(nn.Identity(), torch.zeros(1, 4), threads=1)
    assert result.method == "child-rss"
    assert result.peak_activation_mb < 20


def test_unpicklable_model_falls_back_to_the_profiler():
    model = Allocates(BIG_MB)
    model.callback = lambda: None  # pickle refuses lambdas, so the model cannot go to a child
    x = torch.zeros(1, 4)
    result = measure_memory(model, x)
    assert result.method == "torch-profiler"
    assert result.peak_rss_mb is None
    assert result.peak_activation_mb == pytest.approx(BIG_MB, abs=0.01)  # tensor allocations only: exact
    assert result.peak_mb == pytest.approx(result.peak_activation_mb + model_size_mb(model) + 16 / MB)
    with pytest.raises(RankscopeError, match="Allocates cannot be sent to a child process"):
        measure_memory(model, x, method="child-rss")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_allocator_sees_a_known_allocation():
    result = measure_memory(Allocates(BIG_MB), torch.zeros(1, 4), device="cuda")
    assert result.method == "cuda-allocator"
    assert result.peak_activation_mb == pytest.approx(BIG_MB, rel=0.01)

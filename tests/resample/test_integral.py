"""Integral fine-tuning: a few steps run, keep the architecture, and change only the copy."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from core.errors import RankscopeError
from core.resample.integral import IntegralConfig, integral_finetune
from core.resample.resample import resample_model


@pytest.mark.slow  # over half a second on the 2-core machine
def test_a_few_steps_train_a_copy(zoo):
    model, example, groups = zoo["fmnist-resnet"]
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64, 1, 28, 28, generator=gen), torch.randint(0, 10, (64,), generator=gen))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    tuned = integral_finetune(model, data, example, IntegralConfig(steps=3, batch_size=16), progress=lambda s, n, loss: seen.append(loss))
    assert len(seen) == 3 and all(torch.isfinite(torch.tensor(seen)))
    assert not tuned.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert {k: v.shape for k, v in tuned.state_dict().items()} == {k: v.shape for k, v in before.items()}
    small, _ = resample_model(tuned, example, {n: 0.5 for n in groups}, order=False)
    assert small(example).shape == (2, 10)


@pytest.mark.parametrize("kwargs", [{"steps": 0}, {"min_density": 0.0}, {"min_density": 0.8, "max_density": 0.5}, {"max_density": 1.2}])
def test_bad_settings(kwargs):
    with pytest.raises(RankscopeError):
        IntegralConfig(**kwargs)

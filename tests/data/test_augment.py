"""Augmentation: the symmetries of the square move an LR/HR pair to an LR/HR pair."""
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from core.data.augment import augment_pairs


@settings(max_examples=20, deadline=None)
@given(side=st.integers(2, 12), seed=st.integers(0, 1000), square=st.booleans())
def test_augment_pairs_keeps_each_target_the_upscale_of_its_input(side, seed, square):
    lr = torch.rand(6, 3, side, side if square else side + 3, generator=torch.Generator().manual_seed(seed))
    hr = F.interpolate(lr, scale_factor=2, mode="nearest")  # a degradation that commutes with every symmetry
    a, b = augment_pairs(lr, hr, torch.Generator().manual_seed(seed))
    torch.testing.assert_close(F.interpolate(a, scale_factor=2, mode="nearest"), b)
    assert a.shape == lr.shape and b.shape == hr.shape and a.is_contiguous()
    assert torch.equal(a.flatten(1).sort(1).values, lr.flatten(1).sort(1).values)  # pixels moved, none changed


def test_augment_pairs_draws_all_eight_symmetries():
    lr = torch.arange(4.).view(1, 1, 2, 2).repeat(256, 1, 1, 1)
    a, _ = augment_pairs(lr, lr, torch.Generator().manual_seed(0))
    assert len({tuple(x.flatten().tolist()) for x in a}) == 8
    assert torch.equal(lr[0], torch.arange(4.).view(1, 2, 2))  # the input is not changed in place

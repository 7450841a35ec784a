"""Tiled evaluation of image-to-image models: the stitched output is the whole-image output."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from core.errors import RankscopeError
from core.models.super_resolution import SRMD, Waifu2xUpConv7
from core.profile.tiles import tiled_forward


def _srmd_like() -> SRMD:
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(18, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 12, 3, padding=1), nn.PixelShuffle(2))  # receptive field 7
    return SRMD(body, degradation=tuple(float(i) / 15 for i in range(15))).eval()


def _waifu2x_like() -> Waifu2xUpConv7:
    torch.manual_seed(1)
    layers = []
    for c_in, c_out in ((3, 4), (4, 4), (4, 4), (4, 4), (4, 4), (4, 8)):
        layers += [nn.Conv2d(c_in, c_out, 3), nn.LeakyReLU(0.1)]
    return Waifu2xUpConv7(nn.Sequential(*layers, nn.ConvTranspose2d(8, 3, 4, stride=2, padding=3))).eval()


@settings(max_examples=15, deadline=None)
@given(h=st.integers(5, 40), w=st.integers(5, 40), tile=st.integers(4, 17))
def test_tiles_with_a_margin_of_the_receptive_field_give_the_whole_image_output(h, w, tile):
    model = _srmd_like()
    x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(h * 100 + w))
    with torch.no_grad():
        torch.testing.assert_close(tiled_forward(model, x, tile, margin=3), model(x), atol=1e-5, rtol=0)


def test_tiles_of_a_replicate_padded_model_with_a_transposed_conv_are_exact():
    model = _waifu2x_like()  # its own padding of 7 pixels is the border replicated, at the whole image's border only
    x = torch.rand(1, 3, 37, 29, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole = model(x)
        torch.testing.assert_close(tiled_forward(model, x, 10, margin=14), whole, atol=1e-5, rtol=0)
        assert (tiled_forward(model, x, 10, margin=1) - whole).abs().max() > 1e-3  # a margin too small shows


def test_a_small_input_runs_whole_and_bad_settings_are_refused():
    calls = []

    def model(x):
        calls.append(tuple(x.shape[-2:]))
        return x.repeat_interleave(2, -1).repeat_interleave(2, -2)

    tiled_forward(model, torch.zeros(1, 3, 8, 6), 8, 2)
    assert calls == [(8, 6)]
    calls.clear()
    out = tiled_forward(model, torch.arange(90.).view(1, 1, 9, 10), 4, 1)
    assert calls[0] == (5, 5) and len(calls) == 9  # 3 x 3 tiles, the first widened by its margin on two sides
    torch.testing.assert_close(out, model(torch.arange(90.).view(1, 1, 9, 10)))
    with pytest.raises(RankscopeError, match="margin of at least 0"):
        tiled_forward(model, torch.zeros(1, 3, 8, 8), 4, -1)
    with pytest.raises(RankscopeError, match="whole number"):
        tiled_forward(lambda x: x[..., :-1], torch.zeros(1, 3, 9, 9), 4, 1)

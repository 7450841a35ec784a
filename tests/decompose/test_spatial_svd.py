"""Spatial SVD of an ungrouped ConvTranspose2d: a ``kh x 1`` transposed conv, then a ``1 x kw`` one.

The rows of a transposed conv's output depend only on the kernel's rows and the columns only on its
columns, so the split is two transposed convs: vertical with stride ``(s_h, 1)``, padding ``(p_h, 0)``,
dilation ``(d_h, 1)``, output padding ``(op_h, 0)``; horizontal with ``(1, s_w)``, ``(0, p_w)``, ``(1, d_w)``,
``(0, op_w)`` and the bias. At full rank, ``min(C kh, O kw)``, it reproduces the layer (float32 round-off);
below it the product of the two factors is the best rank-``r`` approximation of the kernel matrix.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

from core.decompose import Decomposed, applicable_methods, get_method
from core.decompose.spatial_svd import spatial_matrix
from core.errors import RankscopeError
from core.profile.counts import count_flops, count_params
from tests.decompose.helpers import rel_error

FULL_RANK_TOL = 1e-5
PROPERTY = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
METHOD = get_method("spatial_svd")


def out_size(n: int, s: int, p: int, d: int, k: int, op: int) -> int:
    return (n - 1) * s - 2 * p + d * (k - 1) + op + 1


@st.composite
def transposed_convs(draw) -> tuple[nn.ConvTranspose2d, torch.Tensor]:
    """An ungrouped ConvTranspose2d: non-square kernels up to 5, stride up to 3, padding, output padding, dilation, bias."""
    cin, cout = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    hw = (draw(st.integers(3, 7)), draw(st.integers(3, 7)))
    assume(all(out_size(n, *g) >= 1 for n, *g in zip(hw, stride, padding, dilation, kernel, output_padding)))
    torch.manual_seed(draw(st.integers(0, 2**16)))
    conv = nn.ConvTranspose2d(cin, cout, kernel, stride, padding, output_padding, 1, draw(st.booleans()), dilation)
    return conv, torch.randn(2, cin, *hw)


def formula_cost(conv: nn.ConvTranspose2d, rank: int, hw: tuple[int, int]) -> tuple[int, int]:
    """Params and FLOPs by hand: the vertical factor runs on the input grid (H, W), the horizontal on (H', W)."""
    C, O, (kh, kw) = conv.in_channels, conv.out_channels, conv.kernel_size
    H, W = hw
    H_out = out_size(H, conv.stride[0], conv.padding[0], conv.dilation[0], kh, conv.output_padding[0])
    params = C * rank * kh + rank * O * kw + (O if conv.bias is not None else 0)
    flops = 2 * C * rank * kh * H * W + 2 * rank * O * kw * H_out * W  # a transposed conv: MACs per input pixel
    return params, flops


@PROPERTY
@given(layer=transposed_convs(), fraction=st.floats(0.0, 1.0))
def test_full_rank_reproduces_and_cost_matches_counter(layer, fraction):
    conv, x = layer
    top = METHOD.max_rank(conv)
    assume(top > 1)  # rank at most 1: refused (test_rank_one_kernel_is_refused)
    assert METHOD.check(conv) is None
    expected = conv(x)
    full = METHOD.build(conv, top)
    assert isinstance(full, Decomposed) and full.method == "spatial_svd" and full.rank == top
    assert full(x).shape == expected.shape
    assert rel_error(full(x), expected) < FULL_RANK_TOL, rel_error(full(x), expected)
    hw = tuple(x.shape[2:])
    for rank in {top, max(1, round(fraction * top))}:
        built = METHOD.build(conv, rank)
        assert built(x).shape == expected.shape
        predicted = METHOD.cost(conv, rank, hw)
        assert (predicted.params, predicted.flops) == formula_cost(conv, rank, hw)
        assert predicted.params == count_params(built)
        assert predicted.flops == count_flops(built, x[:1]).total  # torch.utils.flop_counter


@PROPERTY
@given(layer=transposed_convs())
def test_factor_layers_split_the_geometry_by_axis(layer):
    conv, _ = layer
    assume(METHOD.max_rank(conv) > 1)
    vertical, horizontal = METHOD.build(conv, 1)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = (
        conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.output_padding)
    assert type(vertical) is nn.ConvTranspose2d and type(horizontal) is nn.ConvTranspose2d
    assert (vertical.in_channels, vertical.out_channels, vertical.bias) == (conv.in_channels, 1, None)
    assert (vertical.kernel_size, vertical.stride, vertical.padding, vertical.dilation, vertical.output_padding) == (
        (kh, 1), (sh, 1), (ph, 0), (dh, 1), (oh, 0))
    assert (horizontal.in_channels, horizontal.out_channels) == (1, conv.out_channels)
    assert (horizontal.kernel_size, horizontal.stride, horizontal.padding, horizontal.dilation, horizontal.output_padding) == (
        (1, kw), (1, sw), (0, pw), (1, dw), (0, ow))
    assert (horizontal.bias is None) == (conv.bias is None)


@settings(max_examples=15, deadline=None)
@given(layer=transposed_convs())
def test_max_rank_and_truncation_are_the_kernel_matrix_svd(layer):
    """max_rank is min(C kh, O kw), the rank of M[(o, b), (c, a)] = W[c, o, a, b]; at each rank the
    factors' product is M's best rank-r approximation (Eckart-Young: the error is the tail energy)."""
    conv, _ = layer
    C, O, (kh, kw) = conv.in_channels, conv.out_channels, conv.kernel_size
    assert METHOD.max_rank(conv) == min(C * kh, O * kw)
    M = spatial_matrix(conv)[0].double()
    W = conv.weight.detach().double()
    assert M.shape == (O * kw, C * kh)
    assert all(M[o * kw + b, c * kh + a] == W[c, o, a, b] for c in range(C) for o in range(O) for a in range(kh) for b in range(kw))
    assume(METHOD.max_rank(conv) > 1)
    S = torch.linalg.svdvals(M)
    for rank in range(1, METHOD.max_rank(conv) + 1):
        vertical, horizontal = METHOD.build(conv, rank)
        # effective kernel of the pair: W'[c, o, a, b] = sum_r V[c, r, a] H[r, o, b]
        W_r = torch.einsum("cra,rob->coab", vertical.weight[:, :, :, 0].double(), horizontal.weight[:, :, 0, :].double())
        tail = S[rank:].square().sum().sqrt()
        assert abs((W - W_r).norm() - tail) < 1e-4 * S[0] + 1e-6


def test_waifu2x_upsampler():
    """waifu2x's last layer ConvTranspose2d(256, 3, 4, stride=2, padding=3): rank up to min(256*4, 3*4) = 12."""
    torch.manual_seed(0)
    deconv, x = nn.ConvTranspose2d(256, 3, 4, stride=2, padding=3), torch.randn(2, 256, 9, 9)
    assert "spatial_svd" in applicable_methods(deconv)
    assert METHOD.max_rank(deconv) == 12
    full = METHOD.build(deconv, 12)
    assert [type(m).__name__ for m in full] == ["ConvTranspose2d", "ConvTranspose2d"]
    assert rel_error(full(x), deconv(x)) < FULL_RANK_TOL
    small = METHOD.build(deconv, 4)
    assert small(x).shape == deconv(x).shape == (2, 3, 14, 14)
    assert count_params(small) == 256 * 4 * 4 + 4 * 3 * 4 + 3 < count_params(deconv) / 2
    assert METHOD.cost(deconv, 4, (9, 9)).flops == count_flops(small, x[:1]).total < count_flops(deconv, x[:1]).total / 2
    with pytest.raises(RankscopeError, match="from 1 to 12"):
        METHOD.build(deconv, 13)


def test_grouped_transposed_conv_is_refused():
    deconv = nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2)
    reason = METHOD.check(deconv)
    assert reason == "not decomposable: spatial_svd needs an ungrouped transposed conv (groups=2); svd factors each group"
    assert "spatial_svd" not in applicable_methods(deconv)
    with pytest.raises(RankscopeError, match=r"ConvTranspose2d\(4, 6.*not decomposable: spatial_svd needs an ungrouped transposed conv"):
        METHOD.build(deconv, 1)
    with pytest.raises(RankscopeError, match="ungrouped transposed conv"):
        METHOD.cost(deconv, 1, (5, 5))


@pytest.mark.parametrize("deconv", [nn.ConvTranspose2d(1, 1, 1), nn.ConvTranspose2d(1, 4, (1, 3), stride=2), nn.ConvTranspose2d(3, 1, (2, 1))])
def test_rank_one_kernel_is_refused(deconv):
    assert METHOD.max_rank(deconv) == 1
    assert "rank at most 1" in METHOD.check(deconv)
    with pytest.raises(RankscopeError, match="not decomposable"):
        METHOD.build(deconv, 1)


def test_conv2d_still_gets_conv_factors():
    """The Conv2d path is unchanged: two Conv2d factors, grouped convs per group."""
    conv = nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), groups=2)
    built = METHOD.build(conv, METHOD.max_rank(conv))
    assert [type(m) for m in built] == [nn.Conv2d, nn.Conv2d] and built[0].groups == 2
    x = torch.randn(2, 4, 7, 6)
    assert rel_error(built(x), conv(x)) < FULL_RANK_TOL

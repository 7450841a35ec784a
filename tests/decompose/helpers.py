"""Helpers of the decomposition tests: method lists, layer strategies, error measure, building with cheap options."""
from __future__ import annotations

import torch
from hypothesis import strategies as st
from torch import nn

from core.decompose import get_method, list_methods

CONV_METHODS = ["svd", "spatial_svd", "tucker2", "cp", "tt", "aa_svd", "tucker2_nl"]
LINEAR_METHODS = ["svd", "aa_svd"]
CAPSULE_METHODS = ["capsule_tucker", "capsule_cp"]
# Cheap options per method so property tests stay fast on two CPU cores.
FAST_OPTIONS = {"cp": {"n_iter_max": 60}, "capsule_cp": {"n_iter_max": 60}, "tucker2_nl": {"steps": 3}}


def rel_error(approx: torch.Tensor, exact: torch.Tensor) -> float:
    return ((approx - exact).norm() / exact.norm().clamp_min(1e-30)).item()


def build(name: str, module: nn.Module, rank, calibration: torch.Tensor | None = None) -> nn.Module:
    """Build with the method's cheap test options, passing calibration only to data-aware methods."""
    method = get_method(name)
    kwargs = {"calibration": calibration} if method.needs_calibration else {}
    return method.build(module, rank, **kwargs, **FAST_OPTIONS.get(name, {}))


def scaled_rank(method, module, fraction: float):
    """A rank at ``fraction`` of the way to the method's maximum (each mode for multi-rank methods)."""
    top = method.max_rank(module)
    pick = lambda t: max(1, min(t, round(fraction * t)))  # noqa: E731
    return pick(top) if method.rank_arity == 1 else tuple(pick(t) for t in top)


@st.composite
def conv2d_layers(draw, grouped: bool = False) -> tuple[nn.Conv2d, torch.Tensor]:
    """A Conv2d with random geometry (kernel, stride, padding and its mode, dilation, bias) and an input for it."""
    groups = draw(st.sampled_from([2, 3])) if grouped else 1
    low = 1 if grouped else 2
    cin, cout = groups * draw(st.integers(low, 4)), groups * draw(st.integers(low, 4))
    if grouped and draw(st.booleans()):
        cin = groups  # depthwise: one input channel per group
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.one_of(st.tuples(st.integers(0, 2), st.integers(0, 2)), st.sampled_from(["same", "valid"])))
    stride = (1, 1) if padding == "same" else (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    torch.manual_seed(draw(st.integers(0, 2**16)))
    conv = nn.Conv2d(cin, cout, kernel, stride, padding, dilation, groups, bias=draw(st.booleans()), padding_mode=mode)
    x = torch.randn(3, cin, draw(st.integers(6, 9)), draw(st.integers(6, 9)))
    return conv, x


@st.composite
def conv_transpose_layers(draw) -> tuple[nn.ConvTranspose2d, torch.Tensor]:
    groups = draw(st.sampled_from([1, 1, 2]))
    cin, cout = groups * draw(st.integers(1, 4)), groups * draw(st.integers(1, 4))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 1)), draw(st.integers(0, 1)))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    torch.manual_seed(draw(st.integers(0, 2**16)))
    conv = nn.ConvTranspose2d(cin, cout, kernel, stride, padding, output_padding, groups, draw(st.booleans()), dilation)
    return conv, torch.randn(3, cin, draw(st.integers(4, 7)), draw(st.integers(4, 7)))

"""The registry: names, lookup errors, applicability, rank validation, the Method interface."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from core.decompose import Cost, Method, applicable_methods, get_method, list_methods
from core.errors import RankscopeError
from core.models.capsnet import CapsuleRouting
from tests.decompose.helpers import CAPSULE_METHODS, CONV_METHODS


def test_lists_every_method_once():
    assert list_methods() == ["svd", "spatial_svd", "tucker2", "cp", "tt", "aa_svd", "tucker2_nl", "capsule_tucker", "capsule_cp"]
    assert set(CONV_METHODS + CAPSULE_METHODS) == set(list_methods())


@pytest.mark.parametrize("name", list_methods())
def test_methods_implement_the_interface(name):
    method = get_method(name)
    assert isinstance(method, Method)
    assert method.name == name
    assert method.rank_arity == {"tucker2": 2, "tucker2_nl": 2, "capsule_tucker": 4}.get(name, 1)
    assert method.needs_calibration == (name in ("aa_svd", "tucker2_nl"))


def test_unknown_name_suggests_close_matches():
    with pytest.raises(RankscopeError, match=r"unknown decomposition method 'tuker2'.*did you mean: tucker2"):
        get_method("tuker2")


@pytest.mark.parametrize(
    "module, expected",
    [
        (nn.Linear(8, 6), ["svd", "aa_svd"]),
        (nn.Conv2d(4, 6, 3), ["svd", "spatial_svd", "tucker2", "cp", "tt", "aa_svd", "tucker2_nl"]),
        (nn.Conv2d(4, 8, 3, groups=2), ["svd", "spatial_svd"]),
        (nn.Conv2d(4, 4, 3, groups=4), ["spatial_svd"]),  # depthwise, one output per group: rank 1 per group
        (nn.ConvTranspose2d(4, 6, 3, stride=2), ["svd", "spatial_svd", "tucker2"]),
        (nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2), ["svd"]),
        (CapsuleRouting(6, 3, 4, 5), ["capsule_tucker", "capsule_cp"]),
        (nn.BatchNorm2d(4), []),
        (nn.Conv1d(4, 6, 3), []),
    ],
)
def test_applicable_methods(module, expected):
    assert applicable_methods(module) == expected
    for name in set(list_methods()) - set(expected):
        reason = get_method(name).check(module)
        assert reason.startswith("not decomposable: "), reason
        with pytest.raises(RankscopeError, match="not decomposable"):
            get_method(name).build(module, 1)


@pytest.mark.parametrize("rank", [0, 7, "3", 2.5, None])
def test_bad_rank_names_value_and_range(rank):
    with pytest.raises(RankscopeError, match=r"rank .* for svd on Linear.* must be an integer from 1 to 6"):
        get_method("svd").build(nn.Linear(8, 6), rank)


def test_bad_rank_pair():
    with pytest.raises(RankscopeError, match="2 integers"):
        get_method("tucker2").cost(nn.Conv2d(4, 6, 3), 3, (8, 8))
    with pytest.raises(RankscopeError, match="2 integers"):
        get_method("tucker2").cost(nn.Conv2d(4, 6, 3), (5, 2), (8, 8))  # r_in is at most 4


def test_options_are_checked_and_defaulted():
    conv = nn.Conv2d(4, 6, 3)
    with pytest.raises(RankscopeError, match=r"svd takes no option damping \(options it accepts: none\)"):
        get_method("svd").build(conv, 2, damping=0.1)
    with pytest.raises(RankscopeError, match=r"cp takes no option steps .*n_iter_max, tol, random_state"):
        get_method("cp").build(conv, 2, steps=3)
    with pytest.raises(RankscopeError, match="tucker2_nl takes no option damping"):
        get_method("tucker2_nl").build(conv, (2, 2), calibration=torch.randn(1, 4, 5, 5), damping=0.1)
    assert get_method("aa_svd").options == {"damping": 0.01}
    assert get_method("tucker2_nl").options == {"steps": 300, "lr": 1e-3}


def test_conv_cost_needs_input_size():
    with pytest.raises(RankscopeError, match="input_hw"):
        get_method("svd").cost(nn.Conv2d(4, 6, 3), 2, None)
    assert get_method("svd").cost(nn.Linear(8, 6), 2, None) == Cost(params=2 * 8 + 2 * 6 + 6, flops=2 * (16 + 12))


def test_data_aware_methods_need_calibration():
    for name in ("aa_svd", "tucker2_nl"):
        with pytest.raises(RankscopeError, match="calibration"):
            get_method(name).build(nn.Conv2d(4, 6, 3), get_method(name).max_rank(nn.Conv2d(4, 6, 3)))

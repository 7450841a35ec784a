"""The post-training steps on small networks: BatchNorm re-estimation and shift, bias correction, the anchored
sequential fit, block reconstruction, and the walker that feeds them."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from core.decompose import get_method
from core.errors import RankscopeError
from core.plan import LayerEntry, Plan, PlanError, apply_plan, loads_plan
from core.posttrain import NONE, PostTrain
from core.posttrain.anchored import FewSamplesWarning, Moments, anchored_layer, input_rows
from core.posttrain.batchnorm import reestimate
from core.posttrain.walk import Walker, find_blocks, run_until


class Residual(nn.Module):
    def __init__(self, ch: int, hidden: int, bn: bool) -> None:
        super().__init__()
        self.expand = nn.Conv2d(ch, hidden, 1, bias=not bn)
        self.norm = nn.BatchNorm2d(hidden) if bn else nn.Identity()
        self.project = nn.Conv2d(hidden, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(torch.relu(self.norm(self.expand(x))))


def small_net(bn: bool = True, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=not bn), nn.BatchNorm2d(16) if bn else nn.Identity(), nn.ReLU()),
        Residual(16, 32, bn), Residual(16, 32, bn),
        nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)),
    )
    if bn:  # trained-looking statistics, not the identity ones of a fresh BatchNorm
        net.train()
        with torch.no_grad():
            for _ in range(3):
                net(torch.randn(16, 3, 8, 8))
    return net.eval()


LAYERS = ("0.0", "1.expand", "1.project", "2.expand", "2.project", "3.2")


def plan_for(net: nn.Module, rank: float | int, method: str = "aa_svd", steps: PostTrain | None = None) -> Plan:
    """Every layer of :data:`LAYERS` at ``rank`` (a float: that fraction of its full rank)."""
    def at(path: str) -> int:
        full = get_method(method).max_rank(net.get_submodule(path))
        return max(1, round(rank * full)) if isinstance(rank, float) else rank
    return Plan("small", {p: LayerEntry(method, at(p)) for p in LAYERS}, posttrain=steps)


def output_error(dense: nn.Module, model: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        ref = dense(x)
        return float(((model(x) - ref) ** 2).sum() / (ref ** 2).sum())


@pytest.fixture(scope="module")
def calibration() -> torch.Tensor:
    return torch.randn(64, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def test_blocks_open_plain_containers_only():
    assert find_blocks(small_net()) == ["0.0", "0.1", "0.2", "1", "2", "3.0", "3.1", "3.2"]


def test_walker_gives_what_a_whole_pass_gives(calibration):
    """Inside every block, the walker's per-layer inputs equal those of a pass from the model's input."""
    dense, compressed = small_net(), small_net(seed=3)
    walker = Walker(dense, compressed, list(calibration.split(16)))
    assert walker.chained == [True] * (len(walker.paths) - 1)
    seen = 0
    inside = {"0.1": "0.1", "1": "1.project", "3.2": "3.2"}  # block -> a module in it
    for block in walker.blocks():
        if block in inside:
            path = inside[block]
            for i, (call, _, call_hat, _) in enumerate(walker.at(block, path)):
                x = calibration[16 * i:16 * (i + 1)]
                for model, got in ((dense, call), (compressed, call_hat)):
                    expected, _ = run_until(model, ((x,), {}), model.get_submodule(path))
                    torch.testing.assert_close(got[0][0], expected[0][0])
                seen += 1
    assert seen == 3 * 4


def test_reestimate_reproduces_torch_running_statistics(calibration):
    """Re-estimation on one batch gives the moments a fresh BatchNorm accumulates in training mode on it."""
    net = small_net()
    model = copy.deepcopy(net)
    assert reestimate(model, [calibration]) == 3
    reference = copy.deepcopy(net)
    for m in reference.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    reference.train()
    with torch.no_grad():
        reference(calibration)
    for a, b in zip(model.modules(), reference.modules()):
        if isinstance(a, nn.BatchNorm2d):
            torch.testing.assert_close(a.running_mean, b.running_mean)
            torch.testing.assert_close(a.running_var, b.running_var)
            assert a.momentum == 0.1  # restored
    assert not model.training


def test_bias_correction_removes_the_mean_shift(calibration):
    """After bias correction every compressed layer's mean output on the calibration data (on the compressed prefix's
    inputs) equals the dense layer's on the dense inputs."""
    dense = small_net(bn=False)
    plain, _ = apply_plan(dense, plan_for(dense, 2, "svd"), calibration=calibration)
    corrected, report = apply_plan(dense, plan_for(dense, 2, "svd", PostTrain(sequential=False, bias=True,
                                                                              batchnorm="none")), calibration=calibration)
    assert sorted(report.posttrain.biases) == sorted(LAYERS)
    for path in LAYERS:
        dims = (0,) if path == "3.2" else (0, 2, 3)
        _, ref = run_until(dense, ((calibration,), {}), dense.get_submodule(path))
        _, got = run_until(corrected, ((calibration,), {}), corrected.get_submodule(path))
        _, before = run_until(plain, ((calibration,), {}), plain.get_submodule(path))
        torch.testing.assert_close(got.mean(dims), ref.mean(dims), atol=1e-5, rtol=0)
        assert float((before.mean(dims) - ref.mean(dims)).abs().max()) > 1e-3  # there was a shift to remove


def test_sequential_fit_is_exact_at_full_rank(calibration):
    dense = small_net()
    plan = plan_for(dense, 1.0, steps=PostTrain(sequential=True, bias=True, batchnorm="none"))
    model, report = apply_plan(dense, plan, calibration=calibration)
    assert sorted(report.posttrain.anchored) == sorted(LAYERS)
    x = torch.randn(8, 3, 8, 8)
    torch.testing.assert_close(model(x), dense(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("bn", [True, False])
def test_sequential_fit_is_no_worse_than_independent(calibration, bn):
    """On the calibration data, the anchored sequential fit's final-output error is at most independent aa_svd's."""
    dense = small_net(bn)
    independent, _ = apply_plan(dense, plan_for(dense, 0.5), calibration=calibration)
    sequential, _ = apply_plan(dense, plan_for(dense, 0.5, steps=PostTrain(sequential=True, bias=False, batchnorm="none")),
                               calibration=calibration)
    with_bias, _ = apply_plan(dense, plan_for(dense, 0.5, steps=PostTrain(sequential=True, bias=True, batchnorm="none")),
                              calibration=calibration)
    e_ind, e_seq, e_bias = (output_error(dense, m, calibration) for m in (independent, sequential, with_bias))
    assert e_seq <= e_ind * 1.001
    assert e_bias <= e_seq * 1.001


def test_anchored_fit_on_unchanged_inputs_is_independent_aa_svd(calibration):
    """With the compressed inputs equal to the dense ones (and no bias), the anchored fit is aa_svd itself."""
    conv = small_net().get_submodule("1.project")
    x = torch.randn(32, 32, 8, 8)
    rows = input_rows(conv, x)
    moments = Moments(rows.shape[1])
    moments.add(rows, rows)
    built = anchored_layer(conv, 5, moments, bias=False)
    reference = get_method("aa_svd").build(conv, 5, calibration=x)
    torch.testing.assert_close(built(x), reference(x), atol=1e-4, rtol=1e-4)


def test_too_few_samples_warn_with_the_layer_and_count():
    conv = small_net().get_submodule("1.project")  # 32 * 9 = 288 input features
    x = torch.randn(1, 32, 3, 3)
    rows = input_rows(conv, x)
    moments = Moments(rows.shape[1])
    moments.add(rows, rows)
    with pytest.warns(FewSamplesWarning, match=r"1\.project: 9 calibration rows for 288 input features"):
        anchored_layer(conv, 4, moments, name="1.project")


def test_block_reconstruction_lowers_each_blocks_error(calibration):
    dense = small_net()
    steps = PostTrain(sequential=False, bias=False, batchnorm="none", reconstruct=30, lr=1e-3)
    model, report = apply_plan(dense, plan_for(dense, 2, "svd", steps), calibration=calibration)
    results = report.posttrain.blocks
    assert [b.block for b in results] == ["0.0", "1", "2", "3.2"]
    assert all(b.after <= b.before for b in results)
    assert sum(b.after < b.before for b in results) >= 3
    plain, _ = apply_plan(dense, plan_for(dense, 2, "svd"), calibration=calibration)
    assert output_error(dense, model, calibration) < output_error(dense, plain, calibration)


def test_batchnorm_shift_moves_the_running_moments_by_the_input_moments_change(calibration):
    """The first BatchNorm after a compressed conv: running mean and variance moved by exactly the change of its
    input's mean and (biased) variance on the calibration data, compressed minus dense."""
    dense = small_net()
    plain, _ = apply_plan(dense, plan_for(dense, 2, "svd"), calibration=calibration)
    shifted, report = apply_plan(dense, plan_for(dense, 2, "svd", PostTrain(sequential=False, bias=False)),
                                 calibration=calibration)
    assert report.posttrain.batchnorms == 3
    (x,), _ = run_until(dense, ((calibration,), {}), dense.get_submodule("0.1"))[0]
    (xh,), _ = run_until(plain, ((calibration,), {}), plain.get_submodule("0.1"))[0]
    before, after = dense.get_submodule("0.1"), shifted.get_submodule("0.1")
    dims = (0, 2, 3)
    torch.testing.assert_close(after.running_mean - before.running_mean, xh.mean(dims) - x.mean(dims), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(after.running_var - before.running_var,
                               xh.var(dims, unbiased=False) - x.var(dims, unbiased=False), atol=1e-4, rtol=1e-3)


def test_posttrain_is_recorded_in_the_plan_and_read_back():
    steps = PostTrain(sequential=True, bias=False, batchnorm="reestimate", reconstruct=50)
    plan = Plan("small", {"1.expand": LayerEntry("aa_svd", 4)}, posttrain=steps)
    assert loads_plan(plan.dumps()).posttrain == steps
    assert loads_plan(plan.dumps("json")) == plan
    with pytest.raises(PlanError, match="posttrain: unknown keys steps"):
        loads_plan("model: small\nlayers: {}\nposttrain: {steps: 3}\n")
    with pytest.raises(PlanError, match="batchnorm 'maybe' must be one of shift, reestimate, none"):
        loads_plan("model: small\nlayers: {}\nposttrain: {batchnorm: maybe}\n")


def test_posttrain_without_calibration_is_one_error():
    dense = small_net()
    with pytest.raises(RankscopeError, match="post-training steps .* need calibration data"):
        apply_plan(dense, plan_for(dense, 2, "svd", PostTrain(reconstruct=10)))
    assert not NONE.active


def test_each_step_runs_only_when_asked(calibration):
    """BatchNorm shift alone moves BatchNorms and touches no bias; bias correction alone moves no BatchNorm."""
    dense = small_net()
    _, shifted = apply_plan(dense, plan_for(dense, 2, "svd", PostTrain(sequential=False, bias=False)), calibration=calibration)
    assert shifted.posttrain.batchnorms == 3 and not shifted.posttrain.biases and not shifted.posttrain.anchored
    _, biased = apply_plan(dense, plan_for(dense, 2, "svd", PostTrain(sequential=False, batchnorm="none")),
                           calibration=calibration)
    assert biased.posttrain.batchnorms == 0 and len(biased.posttrain.biases) == len(LAYERS)


def test_a_single_layer_block_fitted_anchored_is_not_reconstructed(calibration):
    """The first conv and the classifier's Linear are blocks of their own: their anchored closed forms already minimise
    the block's error, so only the residual blocks are reconstructed."""
    dense = small_net()
    _, report = apply_plan(dense, plan_for(dense, 0.5, steps=PostTrain(reconstruct=5)), calibration=calibration)
    assert {"0.0", "3.2"} <= set(report.posttrain.anchored)
    assert [b.block for b in report.posttrain.blocks] == ["1", "2"]

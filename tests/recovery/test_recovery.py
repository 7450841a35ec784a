"""Recovery: BatchNorm re-calibration, distillation fine-tune, the `finetune` command and its saved folder."""
from __future__ import annotations

import copy
import re

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from core.cli import main
from core.data import eval_subset, load_dataset
from core.errors import RankscopeError
from core.models import create_model
from core.paths import ASSETS
from core.plan import LayerEntry, Plan, apply_plan, load_plan
from core.profile import Cancelled, evaluate
from core.task import get_task
from core.recovery import (
    RecoveryConfig,
    batchnorm_layers,
    distill,
    distillation_loss,
    recalibrate_batchnorm,
    recover,
    recovery_loss,
)
from core.plan.saved import save_compressed

PLAN = ASSETS / "plans" / "fmnist-resnet-tucker2-half.yaml"  # 47 % of the FLOPs, 13.8 % accuracy as applied


@pytest.fixture(scope="module")
def resnet():
    model, cfg = create_model("fmnist-resnet")
    compressed, _ = apply_plan(model, load_plan(PLAN))
    return model, compressed, cfg


@pytest.fixture(scope="module")
def train_data(resnet):
    return eval_subset(load_dataset("fashion-mnist", resnet[2], split="train"), 4096, seed=1)


@pytest.fixture(scope="module")
def test_data(resnet):
    return eval_subset(load_dataset("fashion-mnist", resnet[2]), 500, seed=0)


def _images(data, n: int) -> torch.Tensor:
    return torch.stack([data[i][0] for i in range(n)])


def test_recalibration_sets_running_stats_to_the_batch_statistics(resnet, train_data):
    _, compressed, _ = resnet
    x = _images(train_data, 64)
    new = recalibrate_batchnorm(compressed, TensorDataset(x, torch.zeros(64)), batches=1, batch_size=64)
    # By hand: the stem BN in training mode normalises with its batch statistics, then the Tucker-2 conv1.
    h = compressed.stem[0](x)
    h = F.relu(F.batch_norm(h, None, None, compressed.stem[1].weight, compressed.stem[1].bias, training=True))
    z = compressed.layer1[0].conv1(h)  # (64, 16, 28, 28), the input of layer1.0.bn1
    mean, var = z.mean((0, 2, 3)), z.transpose(0, 1).reshape(16, -1).var(1)  # unbiased, as BatchNorm keeps it
    bn = new.layer1[0].bn1
    assert not torch.allclose(compressed.layer1[0].bn1.running_var, var, rtol=0.05)  # the plan left them stale
    torch.testing.assert_close(bn.running_mean, mean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_var, var, rtol=1e-4, atol=1e-5)
    assert bn.momentum == 0.1 and not bn.training and int(bn.num_batches_tracked) == 1


def test_recalibration_averages_batches_equally(resnet, train_data):
    _, compressed, _ = resnet
    x = _images(train_data, 128)
    new = recalibrate_batchnorm(compressed, TensorDataset(x, torch.zeros(128)), batches=2, batch_size=64)
    # Two equal batches averaged with equal weight: the stem BN's mean is the mean over all 128 images.
    torch.testing.assert_close(new.stem[1].running_mean, compressed.stem[0](x).mean((0, 2, 3)), rtol=1e-4, atol=1e-5)


def test_recalibration_without_batchnorm_is_an_exact_copy():
    vit, _ = create_model("fmnist-vit")
    data = TensorDataset(torch.randn(8, 1, 28, 28), torch.zeros(8))
    new = recalibrate_batchnorm(vit, data, batches=1, batch_size=8)
    x = torch.randn(4, 1, 28, 28)
    assert batchnorm_layers(vit) == [] and new is not vit
    assert torch.equal(new(x), vit(x))


def test_distillation_loss_values():
    student = torch.tensor([[2.0, 0.0, -1.0]])
    labels = torch.tensor([0])
    assert float(distillation_loss(student, student, labels, temperature=4.0, alpha=1.0)) == pytest.approx(0.0, abs=1e-7)
    ce = float(F.cross_entropy(student, labels))
    assert float(distillation_loss(student, torch.zeros(1, 3), labels, temperature=4.0, alpha=0.0)) == pytest.approx(ce)
    lengths = torch.tensor([[0.95, 0.05, 0.30]])  # capsule lengths: squared distance to the teacher's, margin loss
    teacher = torch.tensor([[0.85, 0.05, 0.10]])
    got = distillation_loss(lengths, teacher, labels, temperature=4.0, alpha=0.5, capsule=True)
    assert float(got) == pytest.approx(0.5 * (0.01 + 0.04) + 0.5 * (0.5 * 0.2**2))


@pytest.mark.slow  # three recovery stages on fmnist-resnet
def test_recover_improves_on_every_stage_and_leaves_inputs_untouched(resnet, train_data, test_data):
    model, compressed, _ = resnet
    states = [copy.deepcopy(m.state_dict()) for m in (model, compressed)]
    calls = []
    result = recover(model, compressed, train_data, test_data, RecoveryConfig(steps=40, bn_batches=8),
                     progress=lambda done, total: calls.append((done, total)))
    assert result.original["top1"] == pytest.approx(0.93, abs=0.03)
    assert result.before["top1"] < 0.25  # the example plan as applied
    assert result.after_bn["top1"] > result.before["top1"] + 0.5  # re-calibration alone: 13.8 % -> 76.7 % on the full split
    assert result.after["top1"] > result.after_bn["top1"] + 0.06  # +10.2 to +14.0 points over five seeds of data and batches
    assert result.batchnorm_layers == 9 and result.steps == 40 and calls[-1] == (40, 40) and len(calls) == 40
    for m, state in zip((model, compressed), states):
        assert all(torch.equal(state[k], v) for k, v in m.state_dict().items())
        assert not m.training
    assert result.model is not compressed and not result.model.training


def test_finetuned_model_round_trips_through_its_folder(resnet, train_data, tmp_path):
    model, compressed, _ = resnet
    tuned = distill(compressed, model, train_data, RecoveryConfig(steps=2, batch_size=16))
    save_compressed(tuned, load_plan(PLAN), "fmnist-resnet", tmp_path / "out")
    loaded, _ = create_model(f"file:{tmp_path / 'out'}")
    x = _images(train_data, 16)
    assert torch.equal(loaded(x), tuned(x)) and not torch.equal(tuned(x), compressed(x))


def test_distill_capsnet_uses_capsule_lengths_and_refuses_a_mixed_pair(resnet):
    caps, _ = create_model("fmnist-capsnet")
    data = TensorDataset(torch.randn(16, 1, 28, 28), torch.arange(16) % 10)
    tuned = distill(caps, caps, data, RecoveryConfig(steps=1, batch_size=8, augment=False))
    out = tuned(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 10) and bool((out >= 0).all() and (out < 1).all())
    with pytest.raises(RankscopeError, match="same kind of output"):
        distill(resnet[1], caps, data, RecoveryConfig(steps=1))


def test_cancel_stops_the_fine_tune(resnet, train_data):
    model, compressed, _ = resnet
    with pytest.raises(Cancelled, match="after 0 of 5 steps"):
        distill(compressed, model, train_data, RecoveryConfig(steps=5), cancel=lambda: True)


def test_bad_settings_name_the_value():
    with pytest.raises(RankscopeError, match=r"lr must be positive, got -0.1; alpha must be in \[0, 1\], got 2"):
        RecoveryConfig(lr=-0.1, alpha=2)


@pytest.mark.slow  # `rankscope finetune` end to end
def test_finetune_command_writes_a_loadable_folder(resnet, tmp_path, capsys):
    out = tmp_path / "tuned"
    args = ["finetune", "fmnist-resnet", "--plan", str(PLAN), "--out", str(out), "--steps", "5", "--batch", "32", "--lr", "1e-3",
            "--samples", "300", "--threads", "1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    after = float(re.search(r"after 5 fine-tune steps\s+top-1\s+([\d.]+) %", printed).group(1))
    loaded, cfg = create_model(f"file:{out}")
    acc = evaluate(loaded, eval_subset(load_dataset("fashion-mnist", cfg), 300, seed=0))
    assert round(100 * acc["top1"], 2) == after
    assert "after BN re-calibration (9 BatchNorm layers)" in printed and after > 60


@pytest.mark.parametrize(
    "extra,pattern",
    [
        (["--lr", "-1"], r"lr must be positive, got -1.0"),
        (["--plan", "missing.yaml"], r"plan file not found: missing.yaml"),
        (["--data", "imagefolder:/nonexistent"], r"imagefolder path /nonexistent is not a folder"),
    ],
)
def test_finetune_bad_input_is_one_line_and_exit_2(tmp_path, capsys, extra, pattern):
    args = ["finetune", "fmnist-resnet", "--plan", str(PLAN), "--out", str(tmp_path / "o"), "--steps", "1", *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert re.search(pattern, err[-1]) and not (tmp_path / "o").exists()


def test_finetune_refuses_a_non_empty_out_before_any_work(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("x")
    assert main(["finetune", "fmnist-resnet", "--plan", str(PLAN), "--out", str(tmp_path)]) == 2
    assert "already exists and is not an empty folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["finetune", "fmnist-resnet", "--plan", str(PLAN), "--out", str(tmp_path / "n"), "--steps", "0"])
    assert exc.value.code == 2


class _Unlabelled(TensorDataset):
    """Inputs with the label -1, as photo crops come."""

    has_labels = False


def test_recovery_without_labels_distills_from_the_original_alone(tiny_net):
    torch.manual_seed(0)
    inputs = torch.randn(96, 3, 8, 8)
    data = _Unlabelled(inputs, torch.full((96,), -1))
    compressed, _ = apply_plan(tiny_net, Plan("tiny", {"3": LayerEntry("svd", 2)}))
    result = recover(tiny_net, compressed, data, data, RecoveryConfig(steps=40, batch_size=32, lr=1e-2, augment=False))
    assert result.original.task == "fidelity" and result.original["agreement"] == 1.0 and result.original.loss == 0
    assert result.after.loss < 0.8 * result.before.loss  # KL to the original (0.72x measured); no label ever read
    assert result.after["agreement"] >= result.before["agreement"]


class _SRPairs(TensorDataset):
    task = "super-resolution-x2"


def _sr_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3, padding=1),
                               torch.nn.ReLU(), torch.nn.Conv2d(16, 12, 3, padding=1), torch.nn.PixelShuffle(2)).eval()


def test_recovery_loss_of_images_is_the_tasks_l1_to_the_teacher_and_to_the_targets():
    task = get_task("super-resolution-x2")
    student, teacher, hr = (torch.full((2, 3, 32, 32), v) for v in (0.5, 0.25, 0.0))
    for alpha, expected in ((1.0, 0.25), (0.0, 0.5), (0.75, 0.75 * 0.25 + 0.25 * 0.5)):
        loss = recovery_loss(task, student, teacher, hr, temperature=4.0, alpha=alpha)
        assert float(loss) == pytest.approx(expected)


def test_super_resolution_recovery_fits_the_hr_patches_and_the_original():
    teacher = _sr_net()
    torch.manual_seed(1)
    lr = torch.rand(64, 3, 16, 16)
    with torch.no_grad():
        hr = teacher(lr).clamp(0, 1)  # the teacher is exact on these pairs: both terms pull the same way
    data = _SRPairs(lr, hr)
    compressed, _ = apply_plan(teacher, Plan("sr", {"2": LayerEntry("svd", 2)}))
    result = recover(teacher, compressed, data, data, RecoveryConfig(steps=60, batch_size=16, lr=3e-3, alpha=0.5))
    assert result.original.task == "super-resolution-x2" and result.batchnorm_layers == 0
    assert result.after["psnr"] > result.before["psnr"] + 1.0
    assert result.after["l1"] < result.before["l1"]
    assert torch.equal(data.tensors[0], lr)  # the data set is untouched by the augmentation

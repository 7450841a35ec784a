"""Export: each format reproduces PyTorch, checks come before work, failures leave nothing behind and name the layer."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from core.errors import RankscopeError
from core.export import FORMATS, export_model, exported
from core.models.cfg import ModelCfg
from core.plan import LayerEntry, Plan, compress
from tests.export.helpers import randomize_batchnorms, toy_input, toy_resnet


class I0e(nn.Module):
    """``torch.special.i0e``: neither ONNX exporter of torch 2.14 converts it (``aten::special_i0e``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.special.i0e(x)


class Counting(nn.Module):
    """Counts its forward calls: a check that fails before any work leaves the count at 0."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.linear = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.linear(x)


def files_in(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


SLOW = pytest.mark.slow  # the ONNX and torch.export exporters take about a second on the toy, TorchScript a quarter


@pytest.mark.parametrize("fmt", [pytest.param("onnx", marks=SLOW), "torchscript", pytest.param("pt2", marks=SLOW)])
def test_each_format_reproduces_pytorch_on_the_inputs(tmp_path, fmt):
    model, x = toy_resnet(), toy_input(2)
    path = tmp_path / f"toy{FORMATS[fmt].suffix}"
    result = export_model(model, x, path, fmt, verify_inputs=toy_input(9, seed=2))
    assert (result.format, result.path, result.size_bytes) == (fmt, str(path), path.stat().st_size)
    assert (result.batch, result.samples, result.inputs) == (2, 8, "example")  # the odd ninth input makes no batch
    assert (result.batchnorms_folded, result.batchnorms_left, result.subnormals_flushed) == (5, 0, 0)
    assert result.max_abs_diff <= 1e-5 and result.max_rel_diff <= 1e-5
    assert files_in(tmp_path) == [path.name]
    run = FORMATS[fmt].load(path)
    with torch.no_grad():
        torch.testing.assert_close(run(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # resnet18 at 64x64 through the ONNX exporter and ONNX Runtime (a few seconds)
def test_compressed_resnet18_onnx_reproduces_pytorch(tmp_path):
    torch.manual_seed(0)
    dense = randomize_batchnorms(torchvision.models.resnet18(num_classes=10)).eval()
    cfg = ModelCfg("resnet18", (3, 64, 64), 10)
    plan = Plan("resnet18", {"layer1.0.conv1": LayerEntry("svd", 16), "layer2.1.conv2": LayerEntry("svd", 32),
                             "layer3.0.conv1": LayerEntry("tucker2", (32, 32)), "fc": LayerEntry("svd", 8)})
    model, _ = compress(dense, cfg, plan)
    x = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    result = export_model(model, x[:2], tmp_path / "resnet18.onnx", "onnx", verify_inputs=x)
    assert (result.batchnorms_folded, result.batchnorms_left) == (20, 0)
    assert result.max_abs_diff < 1e-4 and result.max_rel_diff < 1e-5


def test_unknown_format_and_unwritable_destination_fail_before_any_work(tmp_path):
    model, x = Counting(), torch.zeros(1, 3)
    with pytest.raises(RankscopeError, match=r"unknown export format 'tflite'; use one of onnx, torchscript, pt2"):
        export_model(model, x, tmp_path / "m.tflite", "tflite")
    (tmp_path / "a-file").write_text("")
    with pytest.raises(RankscopeError, match="a-file is not a writable folder"):
        export_model(model, x, tmp_path / "a-file" / "m.onnx", "onnx")
    with pytest.raises(RankscopeError, match="is a folder"):
        export_model(model, x, tmp_path, "onnx")
    assert model.calls == 0 and files_in(tmp_path) == ["a-file"]


def test_artifact_far_from_pytorch_is_not_written_and_the_old_file_stays(tmp_path, monkeypatch):
    off = replace(FORMATS["torchscript"], load=lambda path: (lambda x: torch.ones(1, 10) * 1e3))
    monkeypatch.setitem(FORMATS, "torchscript", off)
    path = tmp_path / "tiny.pt"
    path.write_bytes(b"the old artifact")
    with pytest.raises(RankscopeError, match=r"differs from PyTorch by .* nothing written") as info:
        export_model(nn.Sequential(nn.Linear(3, 10)).eval(), torch.zeros(1, 3), path, "torchscript")
    assert "\n" not in str(info.value)
    assert path.read_bytes() == b"the old artifact" and files_in(tmp_path) == ["tiny.pt"]


def test_forward_returning_no_tensor_is_a_one_line_error(tmp_path):
    class ReturnsDict(nn.Module):
        def forward(self, x: torch.Tensor) -> dict:
            return {"logits": x}

    with pytest.raises(RankscopeError, match="could not export ReturnsDict to TorchScript: its forward returns dict"):
        export_model(ReturnsDict(), torch.zeros(1, 3), tmp_path / "m.pt", "torchscript")


@pytest.mark.slow  # the failing op goes through both ONNX exporters, for the model and for the layer alone
def test_failing_op_is_named_with_its_layer_and_no_file_is_left(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Sequential(nn.Identity(), I0e())).eval()
    path = tmp_path / "m.onnx"
    path.write_bytes(b"the old artifact")
    with pytest.raises(RankscopeError) as info:
        export_model(model, toy_input(1), path, "onnx")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("could not export Sequential to ONNX: layer 2.1 (I0e) fails alone: ")
    assert "aten::special_i0e" in message
    assert path.read_bytes() == b"the old artifact" and files_in(tmp_path) == ["m.onnx"]


@pytest.mark.slow  # an ONNX export and an ONNX Runtime session
def test_exported_artifact_lives_only_inside_the_block():
    with exported(toy_resnet(), toy_input(1), "onnx") as result:
        path = Path(result.path)
        assert result.batchnorms_folded == 5 and path.stat().st_size == result.size_bytes > 0
    assert not path.exists()

"""Uploads are size- and type-checked and unpacked safely; a downloaded compressed model opens again."""
from __future__ import annotations

import io
import zipfile

import pytest
import torch

from core.errors import RankscopeError
from core.models import create_model
from core.plan import LayerEntry, Plan, apply_plan
from core.uploads import compressed_zip, store_upload


def test_weights_are_stored_once_by_content(tmp_path):
    first = store_upload(b"abc", "w.safetensors", root=tmp_path)
    assert first == store_upload(b"abc", "other-name.safetensors", root=tmp_path)
    assert first.read_bytes() == b"abc" and first.suffix == ".safetensors"


@pytest.mark.parametrize(("data", "name", "message"), [
    (b"", "w.pt", "is empty"),
    (b"x" * 2000, "w.pt", "more than the 0.001 MB upload limit"),
    (b"abc", "w.exe", "expected one of .safetensors"),
    (b"abc", "m.zip", "is not a zip archive"),
])
def test_bad_uploads_are_refused(tmp_path, data, name, message):
    with pytest.raises(RankscopeError, match=message):
        store_upload(data, name, max_mb=0.001, root=tmp_path)


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_zips_must_be_saved_models_inside_their_folder(tmp_path):
    with pytest.raises(RankscopeError, match="outside its folder"):
        store_upload(_zip({"../evil.json": b"{}", "rankscope.json": b"{}"}), "m.zip", root=tmp_path)
    with pytest.raises(RankscopeError, match="not a saved rankscope model"):
        store_upload(_zip({"weights.bin": b"0"}), "m.zip", root=tmp_path)
    folder = store_upload(_zip({"saved/rankscope.json": b"{}", "saved/model.safetensors": b"0"}), "m.zip", root=tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "rankscope.json"]


def test_a_downloaded_compressed_model_opens_again(tmp_path):
    model, cfg = create_model("fmnist-resnet")
    plan = Plan("fmnist-resnet", {"layer3.0.conv2": LayerEntry("tucker2", [8, 8]), "fc": LayerEntry("svd", 4)})
    compressed, _ = apply_plan(model, plan)
    folder = store_upload(compressed_zip(compressed, plan, "fmnist-resnet"), "model.zip", root=tmp_path)
    reopened, _ = create_model(f"file:{folder}")
    x = torch.randn(2, *cfg.input_size)
    with torch.no_grad():
        assert torch.equal(reopened(x), compressed(x))

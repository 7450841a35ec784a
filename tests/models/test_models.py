"""The model registry: shipped models, timm/torchvision names, checkpoints, and the errors a user meets."""
from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from core.errors import RankscopeError
from core.models import create_model, list_models

SHIPPED = ["fmnist-capsnet", "fmnist-resnet", "fmnist-resnet-integral", "fmnist-vit"]


def test_registry_lists_the_shipped_models():
    pretrained = ["imagenet-mobilenetv2", "srmd-x2", "srmd-x4", "waifu2x-photo-x2",  # tests/models/test_zoo.py, test_sr_models.py
                  "smollm2-135m"]  # tests/models/test_language.py
    assert list_models() == sorted(SHIPPED + pretrained)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_has_weights_card_and_runs(name):
    model, cfg = create_model(name)
    assert cfg.input_size == (1, 28, 28) and cfg.num_classes == 10 and cfg.dataset == "fashion-mnist"
    assert cfg.weights.endswith("model.safetensors"), "shipped weights missing: run `rankscope train`"
    for key in ("test_accuracy", "params", "flops_per_image", "command", "train_config", "versions"):
        assert key in cfg.card
    assert not model.training
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(
    "name,classes,size",
    [
        ("timm:resnet50", 1000, 224),
        ("timm:mobilenetv3_small_100", 1000, 224),
        ("timm:vit_tiny_patch16_224", 1000, 224),
        ("torchvision:resnet18", 1000, 224),
    ],
)
def test_library_models_build_offline(name, classes, size):
    model, cfg = create_model(name)
    assert cfg.num_classes == classes and cfg.input_size == (3, size, size)
    assert sum(p.numel() for p in model.parameters()) > 1e6


def test_random_init_is_seeded():
    a, _ = create_model("timm:mobilenetv3_small_100")
    b, _ = create_model("timm:mobilenetv3_small_100")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("bad,hint", [("fmnist-resnt", "fmnist-resnet"), ("timm:resnet5O", "resnet50"), ("torchvision:resnet81", "resnet18")])
def test_unknown_name_lists_close_matches(bad, hint):
    with pytest.raises(RankscopeError, match=hint):
        create_model(bad)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"conv.weight": _Exploit(marker)}, f)
    with pytest.raises(RankscopeError, match="refused to load"):
        create_model("fmnist-resnet", weights=str(path))
    assert not marker.exists()


def test_mismatched_checkpoint_names_the_keys(tmp_path):
    model, _ = create_model("fmnist-resnet")
    state = model.state_dict()
    state["fc.weight"] = torch.zeros(5, 64)
    del state["stem.0.weight"]
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(RankscopeError, match=r"missing keys: stem\.0\.weight.*shape mismatch: fc\.weight \(5, 64\)"):
        create_model("fmnist-resnet", weights=str(path))


def test_user_checkpoint_as_safetensors_and_wrapped_state_dict(tmp_path):
    model, _ = create_model("fmnist-resnet")
    with torch.no_grad():
        model.fc.bias.add_(1.0)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "w.safetensors")
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "w.pt")
    x = torch.randn(3, 1, 28, 28)
    for path in (tmp_path / "w.safetensors", tmp_path / "w.pt"):
        loaded, cfg = create_model(f"file:{path}", arch="fmnist-resnet")
        assert torch.equal(loaded(x), model(x)) and cfg.weights == str(path)


def test_file_needs_an_architecture(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({}, path)
    with pytest.raises(RankscopeError, match="--arch"):
        create_model(f"file:{path}")


def test_saved_folder_loads_by_its_metadata(tmp_path):
    model, _ = create_model("fmnist-vit")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "model.safetensors")
    (tmp_path / "rankscope.json").write_text(json.dumps({"arch": "fmnist-vit"}))
    loaded, cfg = create_model(f"file:{tmp_path}")
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(loaded(x), model(x)) and cfg.name == f"file:{tmp_path}"

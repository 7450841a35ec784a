"""Dataset loaders on real (shipped) and small local data, subsets, and mismatch errors."""
from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from core.data import eval_subset, load_dataset, load_fashion_mnist
from core.data.fashion_mnist import read_idx
from core.errors import RankscopeError
from core.models import ModelCfg

FMNIST = ModelCfg("m", (1, 28, 28), 10, (0.5,), (0.5,))
RGB32 = ModelCfg("rgb32", (3, 32, 32), 100, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def test_read_idx_hand_made(tmp_path):
    data = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in data.shape)
    path = tmp_path / "x-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(header + data.tobytes())
    assert np.array_equal(read_idx(path), data)
    raw = tmp_path / "bad-idx1-ubyte"
    raw.write_bytes(b"\x00\x00\x09\x01" + b"\x00" * 8)
    with pytest.raises(RankscopeError, match="magic"):
        read_idx(raw)
    path.write_bytes(b"not gzip")
    with pytest.raises(RankscopeError, match="cannot read"):
        read_idx(path)


def test_fashion_mnist_test_split_ships():
    images, labels = load_fashion_mnist("test")
    assert images.shape == (10000, 1, 28, 28) and images.dtype == torch.uint8
    assert torch.bincount(labels).tolist() == [1000] * 10


def test_fashion_mnist_normalised_for_the_model():
    ds = load_dataset("fashion-mnist", FMNIST)
    x, y = ds[0]
    raw, labels = load_fashion_mnist("test")
    assert torch.allclose(x, (raw[0].float() / 255 - 0.5) / 0.5) and y == labels[0]


def test_fashion_mnist_for_an_rgb_model_says_what_is_wrong():
    with pytest.raises(RankscopeError, match="1-channel images but rgb32 expects 3 channels"):
        load_dataset("fashion-mnist", RGB32)


def _fake_cifar(root, n=20):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batch = {"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8), "fine_labels": list(rng.integers(0, 100, n))}
    (folder / "test").write_bytes(pickle.dumps(batch))
    meta = {"fine_label_names": [f"c{i}" for i in range(100)]}
    (folder / "meta").write_bytes(pickle.dumps(meta))
    return batch


def test_cifar100_from_a_local_root(tmp_path):
    batch = _fake_cifar(tmp_path)
    ds = load_dataset(f"cifar100:{tmp_path}", RGB32)
    x, y = ds[3]
    expected = torch.from_numpy(batch["data"][3].reshape(3, 32, 32)).float() / 255
    assert x.shape == (3, 32, 32) and torch.allclose(x, (expected - 0.5) / 0.25) and y == batch["fine_labels"][3]


def test_cifar_missing_says_where(tmp_path):
    with pytest.raises(RankscopeError, match="cifar10 not found under .* lacks test_batch, batches.meta"):
        load_dataset(f"cifar10:{tmp_path}", RGB32)


def test_cifar_batch_that_would_run_code_is_refused(tmp_path):
    _fake_cifar(tmp_path)
    (tmp_path / "cifar-100-python" / "test").write_bytes(pickle.dumps({"data": print}))
    with pytest.raises(RankscopeError, match="not allowed"):
        load_dataset(f"cifar100:{tmp_path}", RGB32)


def test_imagefolder_resizes_to_the_model(tmp_path):
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.fromarray(np.full((50, 70, 3), 40 * i, dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    ds = load_dataset(f"imagefolder:{tmp_path}", RGB32)
    x, y = ds[3]
    assert len(ds) == 4 and x.shape == (3, 32, 32) and y == 1
    assert torch.allclose(x, torch.full_like(x, (40 / 255 - 0.5) / 0.25), atol=1e-2)
    grey = load_dataset(f"imagefolder:{tmp_path}", FMNIST)[0][0]
    assert grey.shape == (1, 28, 28)


def test_imagefolder_splits_come_from_train_and_val_folders(tmp_path):
    for split, shade in (("train", 0), ("val", 200)):
        (tmp_path / split / "cat").mkdir(parents=True)
        Image.fromarray(np.full((32, 32, 3), shade, dtype=np.uint8)).save(tmp_path / split / "cat" / "0.png")
    train = load_dataset(f"imagefolder:{tmp_path}", RGB32, split="train")
    test = load_dataset(f"imagefolder:{tmp_path}", RGB32)
    assert train.classes == test.classes == ["cat"]
    assert train[0][0].mean() < test[0][0].mean()  # each split read from its own folder
    with pytest.raises(RankscopeError, match="no train/ folder"):
        load_dataset(f"imagefolder:{tmp_path / 'val'}", RGB32, split="train")  # flat class folders: test data only
    with pytest.raises(RankscopeError, match="split 'dev' must be"):
        load_dataset("fashion-mnist", RGB32, split="dev")


def test_imagefolder_errors(tmp_path):
    with pytest.raises(RankscopeError, match="not a folder"):
        load_dataset(f"imagefolder:{tmp_path / 'nope'}", RGB32)
    with pytest.raises(RankscopeError, match="unknown dataset 'fashion-mnst'.*fashion-mnist"):
        load_dataset("fashion-mnst", RGB32)


def test_eval_subset_is_deterministic_and_nested():
    ds = load_dataset("fashion-mnist", FMNIST)
    a, b, small = eval_subset(ds, 2000, seed=1), eval_subset(ds, 2000, seed=1), eval_subset(ds, 500, seed=1)
    assert a.indices == b.indices and small.indices == a.indices[:500]
    assert eval_subset(ds, 2000, seed=2).indices != a.indices
    assert eval_subset(ds, None) is ds
    with pytest.raises(RankscopeError, match="at least 1"):
        eval_subset(ds, 0)

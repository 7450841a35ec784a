"""Super-resolution data by name: the five evaluation photos, the seeded patch pairs, and unusable images skipped by name."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from core.data import calibration_batch, labelled_batch, load_dataset, training_data
from core.data import sr_photos
from core.data.image_files import UnreadableImageWarning, UnsuitableImageWarning
from core.data.photos import CALIBRATION_PHOTOS, EVALUATION_PHOTOS
from core.errors import RankscopeError
from core.models.cfg import ModelCfg
from core.profile import evaluate, task_for
from core.task import BicubicUpscale
from core.task.images import downscale, from_pil, to_pil

X2 = ModelCfg("sr-x2", (3, 32, 32), 0, dataset="set5-like", scale=2, receptive_field=25)
X4 = ModelCfg("sr-x4", (3, 32, 32), 0, dataset="set5-like", scale=4, receptive_field=25)
SIZES = {"astronaut": (512, 512), "motorcycle": (740, 500), "immunohistochemistry": (512, 512), "coast": (500, 500),
         "tulips": (500, 500)}  # HR (width, height) at x2: motorcycle's 741 cropped to a multiple of 2


class FakePhoto:
    """A stand-in for :class:`core.data.photos.Photo` that lies in a test folder."""

    def __init__(self, path):
        self.name, self.path = path.stem, path

    def file(self):
        return self.path


@pytest.fixture(scope="module")
def set5():
    return load_dataset("set5-like", X2)


def test_set5_like_is_five_whole_lossless_evaluation_photos(set5):
    assert set5.names == list(SIZES) and len(set5) == 5
    assert {p.name for p in sr_photos.SET5_LIKE} <= {p.name for p in EVALUATION_PHOTOS}
    assert all(p.file().suffix == ".png" for p in sr_photos.SET5_LIKE)
    for name, (lr, hr) in zip(set5.names, set5):
        w, h = SIZES[name]
        assert hr.shape == (3, h, w) and lr.shape == (3, h // 2, w // 2)
        assert 0 <= float(lr.min()) and float(hr.max()) <= 1
    assert (set5.task, set5.max_batch) == ("super-resolution-x2", 1) and task_for(set5).name == "super-resolution-x2"


def test_the_input_is_pils_bicubic_downscale_of_the_hr_photo(set5):
    lr, hr = set5[0]
    assert torch.equal(lr, from_pil(to_pil(hr).resize((256, 256), Image.Resampling.BICUBIC)))
    lr4, hr4 = load_dataset("set5-like", X4)[1]  # motorcycle at x4: 740 x 500 HR, 185 x 125 LR
    assert (hr4.shape, lr4.shape) == ((3, 500, 740), (3, 125, 185))


def test_set5_like_is_evaluation_only_and_for_super_resolution_models():
    with pytest.raises(RankscopeError, match="no training split; calibrate on sr-patches"):
        load_dataset("set5-like", X2, split="train")
    with pytest.raises(RankscopeError, match="for RGB super-resolution models .* scale 1"):
        load_dataset("set5-like", ModelCfg("classifier", (3, 32, 32), 10))


def test_calibration_patches_come_from_other_photos():
    assert {p.name for p in sr_photos.SR_CALIBRATION} == {"chelsea", "coffee", "flower", "hdr-room", "blossom"}
    assert {p.name for p in sr_photos.SR_CALIBRATION} <= {p.name for p in CALIBRATION_PHOTOS}
    assert not {p.file() for p in sr_photos.SR_CALIBRATION} & {p.file() for p in sr_photos.SET5_LIKE}
    patches = training_data("set5-like", X2)  # no training split of its own: sr-patches' train split
    assert len(patches) == 4096 and patches.task == "super-resolution-x2"


def test_calibration_patches_also_come_from_the_pools_high_resolution_calibration_photos():
    pool = sr_photos.SR_POOL
    assert len(pool) == 94 and all(p.high_res for p in pool) and set(pool) <= set(CALIBRATION_PHOTOS)
    assert not {p.name for p in pool} & {p.name for p in EVALUATION_PHOTOS}
    patches = load_dataset("sr-patches:6", X2, split="train")
    lr, hr = patches[5]  # the pool's first photo, lossy, reduced to 1024 px on its long side
    assert (lr.shape, hr.shape) == ((3, 32, 32), (3, 64, 64)) and torch.equal(lr, from_pil(downscale(to_pil(hr), 2)))
    assert list(patches.images.decoded) == [5] and max(patches.images[5].size) <= 1024  # decoded when needed


def test_evaluation_patches_are_fixed_size_pairs_of_the_evaluation_photos():
    patches = load_dataset("sr-patches:4", X4)  # the test split: patches of the set5-like photos
    lr, hr = patches[2]
    assert (len(patches), lr.shape, hr.shape) == (4, (3, 32, 32), (3, 128, 128))
    assert torch.equal(lr, from_pil(downscale(to_pil(hr), 4))) and torch.equal(patches[2][1], hr)


@pytest.mark.slow  # decodes the calibration photos (one 2268 x 1512) four times
def test_patches_are_seeded_aligned_pairs_at_the_models_input_size():
    patches = load_dataset("sr-patches:8", X2, split="train")
    longer = load_dataset("sr-patches:20", X2, split="train")
    lr, hr = patches[3]
    assert (lr.shape, hr.shape) == ((3, 32, 32), (3, 64, 64))
    assert torch.equal(lr, from_pil(downscale(to_pil(hr), 2)))
    assert all(torch.equal(patches[i][1], longer[i][1]) for i in range(8))  # the first 8 of 20 are the 8
    assert not torch.equal(patches[0][1], patches[5][1])
    inputs, targets = calibration_batch("set5-like", X2, samples=6), labelled_batch("set5-like", X2, samples=6)[1]
    assert inputs.shape == (6, 3, 32, 32) and targets.shape == (6, 3, 64, 64)
    with pytest.raises(RankscopeError, match="number of patches must be a positive integer"):
        load_dataset("sr-patches:0", X2)


def test_evaluation_runs_one_photo_at_a_time(set5):
    baseline = evaluate(BicubicUpscale(2), set5, batch_size=256)  # different sizes: batched by one all the same
    assert baseline.samples == 5 and baseline.task == "super-resolution-x2"
    assert 34.3 < baseline["psnr"] < 34.7  # the card's bicubic mean, 34.48 dB


def test_unusable_photos_are_named_and_the_others_used(tmp_path, monkeypatch):
    gen = torch.Generator().manual_seed(0)
    noise = lambda w, h: to_pil(torch.rand(3, h, w, generator=gen))  # noqa: E731
    noise(120, 100).save(tmp_path / "good.png")
    noise(120, 100).convert("L").save(tmp_path / "grey.png")
    noise(120, 100).convert("RGBA").save(tmp_path / "alpha.png")
    noise(40, 100).save(tmp_path / "small.png")  # 40 px < x2 the receptive field of 25
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    photos = tuple(FakePhoto(tmp_path / f"{n}.png") for n in ("grey", "alpha", "small", "corrupt", "good"))
    monkeypatch.setattr(sr_photos, "SET5_LIKE", photos)
    with pytest.warns(UnsuitableImageWarning) as unsuitable, pytest.warns(UnreadableImageWarning, match="corrupt.png"):
        ds = load_dataset("set5-like", X2)
    messages = [str(w.message) for w in unsuitable if w.category is UnsuitableImageWarning]
    assert any("grey.png: an image of mode L (greyscale)" in m for m in messages)
    assert any("alpha.png: an image of mode RGBA (RGB with alpha)" in m for m in messages)
    assert any("small.png: 40x100 is smaller than 50 px a side" in m for m in messages)
    assert ds.names == ["good"] and ds[0][1].shape == (3, 100, 120)
    monkeypatch.setattr(sr_photos, "SET5_LIKE", photos[:1])
    with pytest.warns(UnsuitableImageWarning), pytest.raises(RankscopeError, match="none of the photos of set5-like"):
        load_dataset("set5-like", X2)

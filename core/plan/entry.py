"""One entry of a plan: what to do to one module or channel group, and which kind of entry it is.

Four kinds, told apart by the entry's ``method`` (their checks and application live in :mod:`core.plan.kinds`):

``decomposition`` (``svd``, ``tucker2``, … from :mod:`core.decompose`), under ``layers:``
    ``{method, rank | ranks, options}``: the module is replaced by its factors.
``attention``, under ``layers:``
    ``{method: attention, variant, rank, options}``: an attention module becomes a variant of
    :mod:`core.attention` reusing its projections; ``rank`` is the variant's ``rank`` option.
``resample`` / ``prune``, under ``groups:``
    ``{method, density, options}``: the fraction of a channel group's channels kept.

A key that an entry's kind does not take is an error that names the key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.decompose.rank import Rank, parse_rank, plan_value, rank_text

ATTENTION = "attention"
GROUP_METHODS = ("resample", "prune")
# The keys each kind of entry takes (``rank`` and ``ranks`` are two spellings of one rank).
KIND_KEYS = {
    "decomposition": frozenset({"method", "rank", "ranks", "options"}),
    ATTENTION: frozenset({"method", "variant", "rank", "options"}),
    "resample": frozenset({"method", "density", "options"}),
    "prune": frozenset({"method", "density", "options"}),
}


def kind_of(method: str) -> str:
    """The kind of entry a ``method`` makes: ``decomposition``, ``attention``, ``resample`` or ``prune``."""
    return method if method == ATTENTION or method in GROUP_METHODS else "decomposition"


def is_group_method(method: str) -> bool:
    """Whether entries of ``method`` are keyed by a channel group (under ``groups:``) rather than a module path."""
    return method in GROUP_METHODS


@dataclass(frozen=True)
class LayerEntry:
    """What to do to one module or channel group.

    Attributes
    ----------
    method : a decomposition method name, ``attention``, ``resample`` or ``prune``.
    rank : the decomposition's :data:`~core.decompose.rank.Rank` (a list is stored as a tuple), or an
        attention variant's rank; ``None`` for group entries.
    density : the fraction of a channel group's channels kept (group entries only).
    options : method options (read-only by convention: entries are hashable plan parts).
    variant : the attention variant (attention entries only).
    """

    method: str
    rank: Rank | None = None
    density: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    variant: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.rank, list):
            object.__setattr__(self, "rank", tuple(self.rank))
        object.__setattr__(self, "options", dict(self.options))

    def __hash__(self) -> int:
        return hash((self.method, self.rank, self.density, _frozen(self.options), self.variant))

    @property
    def kind(self) -> str:
        """See :func:`kind_of`."""
        return kind_of(self.method)

    def to_dict(self) -> dict[str, Any]:
        """The entry as a plan file writes it."""
        out: dict[str, Any] = {"method": self.method}
        if self.variant is not None:
            out["variant"] = self.variant
        if isinstance(self.rank, tuple):
            out["ranks"] = plan_value(self.rank)
        elif self.rank is not None:
            out["rank"] = plan_value(self.rank)
        if self.density is not None:
            out["density"] = self.density
        if self.options:
            out["options"] = dict(self.options)
        return out

    def describe(self) -> str:
        """What the entry does, for reports: ``tucker2 rank 16x12``, ``attention nmf rank 16``."""
        what = self.method if self.variant is None else f"{self.method} {self.variant}"
        return what if self.rank is None else f"{what} rank {rank_text(self.rank)}"


def _frozen(value: Any) -> Any:
    """A hashable stand-in for option values (dicts and lists become sorted tuples)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def entry_from_dict(path: str, raw: Any, problems: list[str]) -> LayerEntry | None:
    """Read one entry of a plan file, appending each shape problem (prefixed with ``path``) to ``problems``."""
    if not isinstance(raw, dict):
        problems.append(f"{path}: entry must be a mapping like {{method: svd, rank: 8}}, got {type(raw).__name__}")
        return None
    method = raw.get("method")
    if not isinstance(method, str) or not method:
        problems.append(f"{path}: 'method' is required and must be a name such as svd or tucker2")
        return None
    kind = kind_of(method)
    allowed = KIND_KEYS[kind]
    unknown = sorted(set(map(str, raw)) - allowed - {"variant"})
    if unknown:
        what = "a decomposition" if kind == "decomposition" else f"a {method}"
        problems.append(f"{path}: unknown keys {', '.join(unknown)} ({what} entry takes {', '.join(sorted(allowed))})")
    if "rank" in raw and "ranks" in raw:
        problems.append(f"{path}: give 'rank' or 'ranks', not both")
    rank = raw.get("ranks", raw.get("rank"))
    if "ranks" in raw and not (isinstance(rank, list) and all(isinstance(r, int) and not isinstance(r, bool) for r in rank)):
        problems.append(f"{path}: 'ranks' must be a list of integers, got {rank!r}")
        rank = None
    elif "rank" in raw and (not isinstance(rank, int) or isinstance(rank, bool)):
        problems.append(f"{path}: 'rank' must be an integer, got {rank!r}")
        rank = None
    elif rank is not None:
        rank = parse_rank(rank)
    density = raw.get("density")
    if density is not None and (isinstance(density, bool) or not isinstance(density, (int, float)) or not 0 < density <= 1):
        problems.append(f"{path}: density must be a number in (0, 1], got {density!r}")
    options = raw.get("options", {})
    if not isinstance(options, dict):
        problems.append(f"{path}: 'options' must be a mapping, got {type(options).__name__}")
        options = {}
    variant = raw.get("variant")
    if (variant is None) != (method != ATTENTION):
        problems.append(f"{path}: 'variant' (e.g. nmf) goes with method: attention, and only with it")
    return LayerEntry(method, rank, None if density is None else float(density), dict(options),
                      None if variant is None else str(variant))

"""The compression plan: a small, human-editable document of what to do to each layer of one model.

A plan is YAML or JSON with the same content::

    schema: 1
    model: fmnist-resnet
    weights_hash: 3f2a...            # sha256 prefix of the weights it was made for
    layers:                          # module paths
      layer1.0.conv1: {method: tucker2, ranks: [8, 8]}
      fc:             {method: svd, rank: 4}
      blocks.0.attn:  {method: attention, variant: nmf, rank: 16, options: {steps: 6}}
    groups:                          # channel groups by name (`rankscope groups MODEL` lists them)
      layer2.0.conv1: {method: resample, density: 0.5}
      layer3.0.conv1: {method: prune, density: 0.5, options: {score: taylor}}
    skipped:                         # informational: layers a generated plan left alone, and why
      layer1.0.bn1: "not decomposable: ..."
    posttrain:                       # optional: steps after building, on calibration data (core.posttrain)
      {sequential: true, bias: true, batchnorm: shift, reconstruct: 200}

The kinds of entry (decomposition, attention variant, channel-group density) are described in
:mod:`core.plan.entry`. ``load_plan`` checks the document's shape and reports every problem at once;
:mod:`core.plan.apply` checks a plan against a model and applies it. A :class:`Plan` is immutable and
hashable, so it can key a cache.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from core.errors import RankscopeError
from core.io import atomic_write_text
from core.plan.entry import LayerEntry, entry_from_dict, is_group_method
from core.posttrain import PostTrain

SCHEMA_VERSION = 1
TOP_KEYS = {"schema", "model", "weights_hash", "layers", "groups", "skipped", "posttrain"}
MAX_PLAN_BYTES = 16 * 2**20  # a plan is a few kB; a larger file is not one


class PlanError(RankscopeError):
    """A plan that cannot be used; ``problems`` lists each one with its module path."""

    def __init__(self, problems: list[str], source: str = "plan") -> None:
        self.problems = problems
        shown = "; ".join(problems[:8]) + (f"; … {len(problems) - 8} more" if len(problems) > 8 else "")
        super().__init__(f"{source}: {len(problems)} problem{'s' * (len(problems) > 1)}: {shown}")


@dataclass(frozen=True)
class Plan:
    """A whole model's compression choice; see the module docstring for the file format.

    Immutable (build a changed copy with :func:`dataclasses.replace`) and hashable by content.
    """

    model: str
    layers: dict[str, LayerEntry] = field(default_factory=dict)
    weights_hash: str | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION
    groups: dict[str, LayerEntry] = field(default_factory=dict)  # resample / prune entries by channel-group name
    posttrain: PostTrain | None = None  # steps after building, on calibration data (None: none)

    def __hash__(self) -> int:
        return hash((self.schema, self.model, self.weights_hash, tuple(self.layers.items()),
                     tuple(self.groups.items()), tuple(self.skipped.items()), self.posttrain))

    def to_dict(self) -> dict[str, Any]:
        """The plan as a plan file holds it."""
        out: dict[str, Any] = {"schema": self.schema, "model": self.model}
        if self.weights_hash:
            out["weights_hash"] = self.weights_hash
        out["layers"] = {name: entry.to_dict() for name, entry in self.layers.items()}
        if self.groups:
            out["groups"] = {name: entry.to_dict() for name, entry in self.groups.items()}
        if self.skipped:
            out["skipped"] = dict(self.skipped)
        if self.posttrain is not None:
            out["posttrain"] = self.posttrain.to_dict()
        return out

    def dumps(self, fmt: str = "yaml") -> str:
        """The plan as YAML or JSON text."""
        if fmt == "json":
            return json.dumps(self.to_dict(), indent=2) + "\n"
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=120)


def weights_hash(model: nn.Module) -> str:
    """First 16 hex digits of the sha256 of the model's state_dict (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def plan_from_dict(doc: Any, source: str = "plan") -> Plan:
    """Build a :class:`Plan` from parsed YAML/JSON, reporting every shape problem at once (:class:`PlanError`)."""
    if not isinstance(doc, dict):
        raise PlanError([f"top level must be a mapping with keys {', '.join(sorted(TOP_KEYS))}"], source)
    problems: list[str] = []
    unknown = sorted(set(doc) - TOP_KEYS)
    if unknown:
        problems.append(f"unknown top-level keys {', '.join(unknown)} (allowed: {', '.join(sorted(TOP_KEYS))})")
    if doc.get("schema", SCHEMA_VERSION) != SCHEMA_VERSION:
        problems.append(f"schema {doc.get('schema')!r} is not supported (this rankscope reads schema {SCHEMA_VERSION})")
    if not isinstance(doc.get("model"), str):
        problems.append("'model' is required: the registry name the plan was made for")
    sections = {}
    for key, what in (("layers", "module paths"), ("groups", "channel-group names")):
        raw_entries = doc.get(key) or {}
        if not isinstance(raw_entries, dict):
            problems.append(f"'{key}' must map {what} to entries")
            raw_entries = {}
        sections[key] = {}
        for name, raw in raw_entries.items():
            entry = sections[key][str(name)] = entry_from_dict(str(name), raw, problems)
            if entry is not None and (key == "groups") != is_group_method(entry.method):
                problems.append(f"{name}: {entry.method} entries belong under "
                                f"'{'groups' if is_group_method(entry.method) else 'layers'}'")
    skipped = doc.get("skipped") or {}
    posttrain = None
    if doc.get("posttrain") is not None:
        try:
            posttrain = PostTrain.from_dict(doc["posttrain"])
        except RankscopeError as err:
            problems.append(str(err))
    if problems:
        raise PlanError(problems, source)
    layers, groups = ({k: v for k, v in sections[key].items() if v is not None} for key in ("layers", "groups"))
    return Plan(doc["model"], layers, doc.get("weights_hash"),
                {str(k): str(v) for k, v in skipped.items()} if isinstance(skipped, dict) else {}, groups=groups,
                posttrain=posttrain)


def loads_plan(text: str, source: str = "plan") -> Plan:
    """Parse plan text (YAML, of which JSON is a subset).

    Raises
    ------
    PlanError
        Not YAML, nested too deeply to be a plan, or not a plan's shape (every problem listed).
    """
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PlanError([f"not valid YAML/JSON{where}: {getattr(err, 'problem', None) or err}"], source) from None
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        raise PlanError(["nested too deeply to be a plan (a plan is at most four levels deep)"], source) from None
    return plan_from_dict(doc, source)


def load_plan(path: str | Path) -> Plan:
    """Read a plan file (``.yaml``, ``.yml`` or ``.json``, UTF-8 text).

    Raises
    ------
    RankscopeError
        No such file, not UTF-8 text, too large to be a plan; :class:`PlanError` for its contents.
    """
    path = Path(path)
    if not path.is_file():
        raise RankscopeError(f"plan file not found: {path}")
    if path.stat().st_size > MAX_PLAN_BYTES:
        raise RankscopeError(f"{path}: {path.stat().st_size} bytes is too large for a plan file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise RankscopeError(f"{path}: not UTF-8 text (byte {err.start}); a plan is a YAML or JSON file") from None
    return loads_plan(text, source=str(path))


def save_plan(plan: Plan, path: str | Path) -> None:
    """Write a plan atomically, as JSON if the name ends in ``.json``, else YAML."""
    path = Path(path)
    atomic_write_text(path, plan.dumps("json" if path.suffix == ".json" else "yaml"))

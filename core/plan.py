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

The three kinds of entry (decomposition, attention variant, channel-group density) are described in
:mod:`core.plan_kinds`. ``load_plan`` checks the document's shape; ``validate_plan`` checks it against a model and reports
every problem at once with the module path; ``apply_plan`` returns a new model and a report, never
touching the original.
"""
from __future__ import annotations

import copy
import hashlib
import json
import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from core.errors import RankscopeError
from core.io import atomic_write_text
from core.layers import layer_inputs, set_module
from core.plan_kinds import (
    ATTENTION, apply_groups, attention_problem, build_attention, group_problems, group_structure, is_group_method,
)

SCHEMA_VERSION = 1
TOP_KEYS = {"schema", "model", "weights_hash", "layers", "groups", "skipped"}
ENTRY_KEYS = {"method", "variant", "rank", "ranks", "density", "options"}


class PlanError(RankscopeError):
    """A plan that cannot be used; ``problems`` lists each one with its module path."""

    def __init__(self, problems: list[str], source: str = "plan") -> None:
        self.problems = problems
        shown = "; ".join(problems[:8]) + (f"; … {len(problems) - 8} more" if len(problems) > 8 else "")
        super().__init__(f"{source}: {len(problems)} problem{'s' * (len(problems) > 1)}: {shown}")


def plan_rank(rank: int | tuple[int, ...]) -> int | list[int]:
    """A rank as a :class:`LayerEntry` stores it: an int, or a list for multi-mode ranks (a method's tuple)."""
    return list(rank) if isinstance(rank, tuple) else int(rank)


@dataclass
class LayerEntry:
    """What to do to one module or channel group: a method (and attention variant), its rank (int), ranks
    (list) or density, plus method options."""

    method: str
    rank: int | list[int] | None = None
    density: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    variant: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method}
        if self.variant is not None:
            out["variant"] = self.variant
        if isinstance(self.rank, list):
            out["ranks"] = list(self.rank)
        elif self.rank is not None:
            out["rank"] = self.rank
        if self.density is not None:
            out["density"] = self.density
        if self.options:
            out["options"] = dict(self.options)
        return out


@dataclass
class Plan:
    """A whole model's compression choice; see the module docstring for the file format."""

    model: str
    layers: dict[str, LayerEntry] = field(default_factory=dict)
    weights_hash: str | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION
    groups: dict[str, LayerEntry] = field(default_factory=dict)  # resample / prune entries by channel-group name

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schema": self.schema, "model": self.model}
        if self.weights_hash:
            out["weights_hash"] = self.weights_hash
        out["layers"] = {name: entry.to_dict() for name, entry in self.layers.items()}
        if self.groups:
            out["groups"] = {name: entry.to_dict() for name, entry in self.groups.items()}
        if self.skipped:
            out["skipped"] = dict(self.skipped)
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


def _parse_entry(path: str, raw: Any, problems: list[str]) -> LayerEntry | None:
    if not isinstance(raw, dict):
        problems.append(f"{path}: entry must be a mapping like {{method: svd, rank: 8}}, got {type(raw).__name__}")
        return None
    unknown = sorted(set(raw) - ENTRY_KEYS)
    if unknown:
        problems.append(f"{path}: unknown keys {', '.join(unknown)} (allowed: {', '.join(sorted(ENTRY_KEYS))})")
    method = raw.get("method")
    if not isinstance(method, str) or not method:
        problems.append(f"{path}: 'method' is required and must be a name such as svd or tucker2")
        return None
    if "rank" in raw and "ranks" in raw:
        problems.append(f"{path}: give 'rank' or 'ranks', not both")
    rank = raw.get("ranks", raw.get("rank"))
    if "ranks" in raw and not (isinstance(rank, list) and all(isinstance(r, int) and not isinstance(r, bool) for r in rank)):
        problems.append(f"{path}: 'ranks' must be a list of integers, got {rank!r}")
    if "rank" in raw and (not isinstance(rank, int) or isinstance(rank, bool)):
        problems.append(f"{path}: 'rank' must be an integer, got {rank!r}")
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
            entry = sections[key][str(name)] = _parse_entry(str(name), raw, problems)
            if entry is not None and (key == "groups") != is_group_method(entry.method):
                problems.append(f"{name}: {entry.method} entries belong under "
                                f"'{'groups' if is_group_method(entry.method) else 'layers'}'")
    skipped = doc.get("skipped") or {}
    if problems:
        raise PlanError(problems, source)
    layers, groups = ({k: v for k, v in sections[key].items() if v is not None} for key in ("layers", "groups"))
    return Plan(doc["model"], layers, doc.get("weights_hash"),
                {str(k): str(v) for k, v in skipped.items()} if isinstance(skipped, dict) else {}, groups=groups)


def loads_plan(text: str, source: str = "plan") -> Plan:
    """Parse plan text (YAML, of which JSON is a subset)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PlanError([f"not valid YAML/JSON{where}: {getattr(err, 'problem', None) or err}"], source) from None
    return plan_from_dict(doc, source)


def load_plan(path: str | Path) -> Plan:
    """Read a plan file (``.yaml``, ``.yml`` or ``.json``)."""
    path = Path(path)
    if not path.is_file():
        raise RankscopeError(f"plan file not found: {path}")
    return loads_plan(path.read_text(encoding="utf-8"), source=str(path))


def save_plan(plan: Plan, path: str | Path) -> None:
    """Write a plan atomically, as JSON if the name ends in ``.json``, else YAML."""
    path = Path(path)
    atomic_write_text(path, plan.dumps("json" if path.suffix == ".json" else "yaml"))


def _rank_problem(method, module: nn.Module, rank: Any) -> str | None:
    """Why ``rank`` is not valid for ``method`` on ``module`` (1..max per mode), or ``None``."""
    top = method.max_rank(module)
    tops = (top,) if method.rank_arity == 1 else tuple(top)
    values = [rank] if method.rank_arity == 1 and not isinstance(rank, list) else rank
    if values is None or values == [None]:
        return f"{method.name} needs {'rank: N' if method.rank_arity == 1 else f'ranks: [{len(tops)} integers]'}"
    try:
        values = [operator.index(v) for v in values]
    except TypeError:
        return f"rank {rank!r} is not an integer"
    if len(values) != len(tops):
        return f"{method.name} takes {len(tops)} rank{'s' * (len(tops) > 1)}, got {len(values)}"
    bad = [f"{v} not in 1..{t}" for v, t in zip(values, tops) if not 1 <= v <= t]
    return f"rank out of range ({', '.join(bad)})" if bad else None


def _module_problems(entries: dict[str, LayerEntry], model: nn.Module) -> list[str]:
    """Every problem of the decomposition and attention entries against ``model``."""
    from core.decompose.registry import get_method, list_methods

    modules = dict(model.named_modules())
    swapped = [p for p, e in entries.items() if e.method == ATTENTION]
    problems = []
    for path, entry in entries.items():
        module = modules.get(path)
        if module is None or path == "":
            problems.append(f"{path}: no such module in the model")
            continue
        inside = next((p for p in swapped if path.startswith(p + ".")), None)
        if inside:
            problems.append(f"{path}: inside {inside}, which the plan replaces by an attention variant")
            continue
        if entry.method == ATTENTION:
            reason = attention_problem(model, path, entry)
            if reason:
                problems.append(f"{path}: {reason}")
            continue
        if entry.method not in list_methods():
            known = ", ".join([*list_methods(), ATTENTION, "resample", "prune"])
            problems.append(f"{path}: unknown method {entry.method!r} (known: {known})")
            continue
        method = get_method(entry.method)
        reason = method.check(module)
        if reason:
            problems.append(f"{path}: {entry.method} does not apply ({reason})")
            continue
        bad_rank = _rank_problem(method, module, entry.rank)
        if bad_rank:
            problems.append(f"{path}: {bad_rank}")
    return problems


def validate_plan(plan: Plan, model: nn.Module, example: torch.Tensor | None = None) -> list[str]:
    """Every problem of ``plan`` against ``model``, each prefixed with its module path or group name ([] when valid).

    ``example`` (a batch of model inputs) is needed only by channel-group entries (``plan.groups``): the
    groups are found by tracing. When the plan has group entries, its module entries are checked against
    the narrowed model, the one they will be applied to.
    """
    problems = group_problems(model, plan.groups, example)
    if plan.groups and plan.layers and not problems:
        model, _ = apply_groups(model, group_structure(plan.groups), example)
    return problems + _module_problems(plan.layers, model)


@dataclass
class ApplyReport:
    """What ``apply_plan`` did: replaced modules with their method and rank, and what it skipped and why."""

    applied: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"applied {len(self.applied)} layer(s), skipped {len(self.skipped)}"]
        lines += [f"  {path}: {what}" for path, what in self.applied.items()]
        lines += [f"  skipped {path}: {why}" for path, why in self.skipped.items()]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def apply_plan(
    model: nn.Module,
    plan: Plan,
    *,
    force: bool = False,
    calibration: torch.Tensor | None = None,
    example: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
) -> tuple[nn.Module, ApplyReport]:
    """Return a compressed copy of ``model`` and a report; ``model`` itself is left untouched.

    Parameters
    ----------
    model : the model the plan was made for.
    plan : the plan (validated here against ``model``; all problems raise one :class:`PlanError`).
    force : apply even if ``plan.weights_hash`` differs from the model's weights (a warning is reported).
    calibration : a batch of *model* inputs for data-aware methods; each layer's inputs are captured from it.
    example : a batch of model inputs for tracing: channel groups, attention sequence lengths (defaults
        to the first calibration input).
    labels : the labels of ``calibration``, for the gradient-based pruning scores (taylor, hessian).
    """
    from core.decompose.registry import get_method

    if example is None and calibration is not None:
        example = calibration[:1]
    groups, modules = plan.groups, plan.layers
    problems = group_problems(model, groups, example)
    if problems:
        raise PlanError(problems)
    report = ApplyReport(skipped=dict(plan.skipped))
    if plan.weights_hash:
        actual = weights_hash(model)
        if actual != plan.weights_hash:
            message = f"plan was made for weights {plan.weights_hash}, this model has {actual}"
            if not force:
                raise RankscopeError(message + "; pass --force (force=True) to apply it anyway")
            report.warnings.append(message)
    base = model
    if groups:
        data = None if calibration is None or labels is None else (calibration, labels)
        base, report.applied = apply_groups(model, groups, example, data)
    problems = _module_problems(modules, base)
    if problems:
        raise PlanError(problems)
    needs_data = [p for p, e in modules.items() if e.method != ATTENTION and get_method(e.method).needs_calibration]
    if needs_data and calibration is None:
        raise RankscopeError(f"{', '.join(needs_data[:3])}: data-aware methods need calibration data (--data)")
    attention = [p for p, e in modules.items() if e.method == ATTENTION]
    if attention and example is None:
        raise RankscopeError(f"{', '.join(attention[:3])}: attention entries need an example input (their sequence length)")
    inputs = layer_inputs(base, needs_data, calibration) if needs_data else {}
    inputs |= layer_inputs(base, attention, example if calibration is None else calibration) if attention else {}
    new = copy.deepcopy(base) if base is model else base  # a narrowed model is already a new one
    originals = dict(base.named_modules())  # replacing a module in ``new`` leaves these references intact
    for path, entry in modules.items():
        try:
            if entry.method == ATTENTION:
                built = build_attention(originals[path], entry, inputs[path])
            else:
                built = get_method(entry.method).build(originals[path], entry.rank, calibration=inputs.get(path), **entry.options)
        except (TypeError, RankscopeError) as err:
            raise PlanError([f"{path}: {entry.method}: {err}"]) from None
        set_module(new, path, built)
        report.applied[path] = _describe(entry)
    return new.eval(), report


def _describe(entry: LayerEntry) -> str:
    """What a module entry did, for the report: ``tucker2 rank 16x12``, ``attention nmf rank 16``."""
    what = entry.method if entry.variant is None else f"{entry.method} {entry.variant}"
    if entry.rank is None:
        return what
    return f"{what} rank {entry.rank if not isinstance(entry.rank, list) else 'x'.join(map(str, entry.rank))}"

"""Session state: the keys every page shares with their defaults, widgets bound to them, the model chosen
(:class:`Choice`), the sweep grid (:class:`Grid`) and the plan under edit.

The cached calls into ``core`` live apart, in :mod:`dashboard.cached`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager
from torch import nn

from core.decompose import dense_cost, get_method
from core.decompose.rank import Rank, as_rank, parse_rank, rank_at
from core.errors import RankscopeError
from core.evaluate import INTERACTIVE_SAMPLES
from core.layers.study import default_method
from core.plan import LayerEntry, Plan, PlanError, kind_of, plan_from_dict, validate_plan
from core.posttrain import PostTrain
from core.profile import example_input
from core.sweep import DEFAULT_FOLDER
from dashboard.cached import compressible, model_and_cfg, weights_digest

DEFAULTS = {
    "model": "fmnist-resnet",  # the model every page works on: registry name, or file:<path> of an upload
    "arch": "",  # architecture of an uploaded weights file
    "source": "shipped",  # which Model-page input chose it: "shipped", "custom" or "upload"
    "shipped": "fmnist-resnet",
    "custom": "",  # a timm:/torchvision: name typed in
    "upload_arch": "",
    "data": "",  # evaluation data; "" = the model's own dataset, else unlabelled photos (cached.data_name)
    "samples": INTERACTIVE_SAMPLES,  # evaluation subset behind every live score
    "batch": 1,  # batch of latency and memory runs
    "threads": 1,
    "device": "cpu",
    "sweep_layers": (),  # the Sensitivity page's sweep (see Grid): layers, () = every compressible layer
    "sweep_methods": (),  # methods, () = each layer's default
    "sweep_points": 6,  # ranks per layer and method
    "sweep_folder": str(DEFAULT_FOLDER),  # the sweep cache, shared with `rankscope sweep` (relative to the server's folder)
}


def init_state() -> None:
    """Put every key's default into ``st.session_state`` once per session.

    Also hands a page opened by a direct link (``/plan``) on a fresh server back to ``app.py``: Streamlit
    then still treats ``dashboard/pages/`` as a legacy pages folder and runs the page script alone, without
    the navigation and page config, until some script calls ``st.navigation``.
    """
    if PagesManager.uses_pages_directory and not st.session_state.get("_started"):  # once, before any click
        PagesManager.uses_pages_directory = False
        st.rerun()
    st.session_state["_started"] = True
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)


def keep(name: str, default: Any = None, then: Callable[[], None] | None = None) -> dict:
    """Widget arguments that bind a widget to the session value ``name`` across pages.

    Streamlit forgets a widget's own key when a page without that widget runs; the widget therefore
    gets a private key, seeded from ``st.session_state[name]`` (``default`` the first time) and copied
    back on change, after which ``then()`` runs. Pass no ``value``/``index`` to the widget itself.
    """
    widget = f"_w_{name}"
    st.session_state.setdefault(name, default)
    st.session_state[widget] = st.session_state[name]
    return {"key": widget, "on_change": _store, "args": (name, widget, then)}


def _store(name: str, widget: str, then: Callable[[], None] | None) -> None:
    st.session_state[name] = st.session_state[widget]
    if then is not None:
        then()


@dataclass(frozen=True)
class Choice:
    """What the Model page chose; every other page computes for this."""

    model: str
    arch: str
    data: str
    samples: int
    batch: int
    threads: int
    device: str

    @property
    def key(self) -> tuple[str, str]:
        """The model: the first arguments of every cached call."""
        return self.model, self.arch

    @property
    def evaluation(self) -> tuple[str, str, str, int, str]:
        """What the model is scored on: the key of ``cached.plan_evaluator`` and the first arguments of ``cached.plans``."""
        return self.model, self.arch, self.data, self.samples, self.device


def choice() -> Choice:
    """The current :class:`Choice` from the session."""
    init_state()
    s = st.session_state
    return Choice(s["model"], s["arch"], s["data"], int(s["samples"]), int(s["batch"]), int(s["threads"]), s["device"])


@dataclass(frozen=True)
class Grid:
    """The sweep the Sensitivity page chose; the Plan page's allocators use the same one."""

    layers: tuple[str, ...]  # () = every layer a data-free method applies to
    methods: tuple[str, ...]  # () = each layer's default method
    points: int  # ranks per layer and method

    def describe(self) -> str:
        layers = ", ".join(self.layers) if self.layers else "every compressible layer"
        methods = ", ".join(self.methods) if self.methods else "its default method"
        return f"{layers}; {methods}; {self.points} ranks each"


def grid(c: Choice) -> Grid:
    """The current :class:`Grid` from the session; layers and methods the chosen model lacks (another model's) are dropped."""
    s, layers = st.session_state, compressible(*c.key)
    s["sweep_layers"] = tuple(p for p in s["sweep_layers"] if p in set(layers["name"]))
    s["sweep_methods"] = tuple(m for m in s["sweep_methods"] if any(m in ms for ms in layers["methods"]))
    return Grid(s["sweep_layers"], s["sweep_methods"], int(s["sweep_points"]))


# --- the plan being edited -------------------------------------------------------------------
def plan_entries(c: Choice) -> dict[str, dict]:
    """The plan under edit for the chosen model: ``{path: {"method", "rank", "density", "options", "variant"}}``
    (method ``None``: the layer stays dense; a rank may be text as typed until it reads as one); started on
    first use with every compressible layer at half rank where that makes it smaller than dense (a depthwise conv's
    spatial SVD at half rank has more parameters and FLOPs than the conv: it starts dense)."""
    s = st.session_state
    if s.get("plan_for") != c.key:
        model, _ = model_and_cfg(*c.key)
        entries = {}
        for path in compressible(*c.key)["name"]:
            module = model.get_submodule(path)
            method = default_method(module)
            rank = None if method is None else rank_for(model, path, method, 0.5)
            # only parameters are compared: a conv's FLOPs need an input size, any will do (16 x 16)
            if rank is not None and get_method(method).cost(module, rank, (16, 16)).params < dense_cost(module, (16, 16)).params:
                entries[path] = session_entry(LayerEntry(method, rank))
        s["plan_entries"], s["plan_groups"], s["plan_for"], s["history"] = entries, {}, c.key, []
        s["plan_version"] = s.get("plan_version", 0) + 1
    return s["plan_entries"]


def plan_groups(c: Choice) -> dict[str, dict]:
    """The channel-group entries of the plan under edit (``{group: session entry}``), empty at first."""
    plan_entries(c)
    return st.session_state["plan_groups"]


def set_plan_groups(entries: dict[str, dict]) -> None:
    """Replace the channel-group entries of the plan under edit."""
    st.session_state["plan_groups"] = entries


def set_plan_entries(entries: dict[str, dict]) -> None:
    """Replace the plan under edit; widgets showing the old one are re-seeded (new keys)."""
    st.session_state["plan_entries"] = entries
    st.session_state["plan_version"] = st.session_state.get("plan_version", 0) + 1


def session_entry(entry: LayerEntry) -> dict:
    """A plan entry as the session keeps it (see :func:`plan_entries`)."""
    return {"method": entry.method, "rank": entry.rank, "density": entry.density, "options": dict(entry.options),
            "variant": entry.variant}


def set_plan(plan: Plan) -> None:
    """Make ``plan``'s entries (layers and channel groups) and post-training steps the plan under edit."""
    set_plan_groups({g: session_entry(e) for g, e in plan.groups.items()})
    set_plan_entries({p: session_entry(e) for p, e in plan.layers.items()})
    set_posttrain(plan.posttrain)


def set_posttrain(steps: PostTrain | None) -> None:
    """The post-training steps of the plan under edit (``None``: none)."""
    st.session_state["plan_posttrain"] = None if steps is None else steps.to_dict()


def posttrain() -> PostTrain | None:
    """The post-training steps of the plan under edit."""
    doc = st.session_state.get("plan_posttrain")
    return None if doc is None else PostTrain.from_dict(doc)


def rank_for(model: nn.Module, path: str, method: str, fraction: float) -> Rank | None:
    """``fraction`` of the layer's full rank for ``method``; ``None`` where the method does not apply (validation says why)."""
    module, m = model.get_submodule(path), get_method(method)
    return None if m.check(module) is not None else rank_at(m, module, fraction)


def scale_ranks(c: Choice, fraction: float) -> None:
    """Every decomposition entry of the plan under edit at ``fraction`` of its full rank."""
    model, _ = model_and_cfg(*c.key)
    set_plan_entries({p: {**e, "rank": rank_for(model, p, e["method"], fraction)} if _is_decomposition(e) else e
                      for p, e in plan_entries(c).items()})


def method_everywhere(c: Choice, method: str, paths: Sequence[str], fraction: float) -> None:
    """``method`` at ``fraction`` of full rank for each of ``paths`` it applies to."""
    model, _ = model_and_cfg(*c.key)
    new = dict(plan_entries(c))
    for path in paths:
        rank = rank_for(model, path, method, fraction)
        if rank is not None:
            new[path] = {**new.get(path, {}), "method": method, "rank": rank}
    set_plan_entries(new)


def edit_entries(c: Choice, changes: dict[str, dict], fraction: float) -> None:
    """Apply ``{path: {"method": name or None (dense), "rank": text}}`` to the plan under edit; a new method starts
    at ``fraction`` of full rank, a rank that does not read as one is kept as typed (:func:`current_plan` says why)."""
    model, _ = model_and_cfg(*c.key)
    new = dict(plan_entries(c))
    for path, change in changes.items():
        entry = dict(new.get(path) or {"method": None, "rank": None, "density": None, "options": {}, "variant": None})
        if "method" in change:
            entry["method"] = change["method"]
            entry["rank"] = rank_for(model, path, entry["method"], fraction) if entry["method"] else None
        if "rank" in change and entry["method"]:
            try:
                entry["rank"] = parse_rank(change["rank"])
            except RankscopeError:
                entry["rank"] = str(change["rank"])
        new[path] = entry
    set_plan_entries(new)


def set_rank(c: Choice, path: str, values: Sequence[int]) -> None:
    """One entry's rank from one value per mode (its widgets stay: no re-seeding)."""
    entry = plan_entries(c)[path]
    st.session_state["plan_entries"] = {**plan_entries(c), path: {**entry, "rank": as_rank(get_method(entry["method"]), values)}}


def remove_other_kinds(c: Choice) -> None:
    """Drop the attention variants and channel groups from the plan under edit."""
    set_plan_groups({})
    set_plan_entries({p: e for p, e in plan_entries(c).items() if not e.get("method") or _is_decomposition(e)})


def _is_decomposition(e: dict) -> bool:
    return bool(e.get("method")) and kind_of(e["method"]) == "decomposition"


def _entry(e: dict) -> LayerEntry:
    """A session entry as a plan entry (raises ``RankscopeError`` for a rank that does not read as one)."""
    rank = None if e["rank"] is None else parse_rank(e["rank"])
    return LayerEntry(e["method"], rank, e.get("density"), e.get("options") or {}, e.get("variant"))


def current_plan(c: Choice, *, with_hash: bool = False) -> tuple[Plan, list[str]]:
    """The plan under edit as a :class:`core.plan.Plan`, and its problems.

    Every problem (``"path: what"``, from ``core.plan``'s checks) leaves its layer out of the plan:
    a layer stays dense until its entry is fixed.
    """
    model, cfg = model_and_cfg(*c.key)
    layers, problems = {}, []
    for path, e in plan_entries(c).items():
        try:
            if e.get("method"):
                layers[path] = _entry(e)
        except RankscopeError as err:
            problems.append(f"{path}: {err}")
    wanted = Plan(c.model, layers, groups={g: _entry(e) for g, e in plan_groups(c).items()}, posttrain=posttrain())
    try:
        problems += validate_plan(plan_from_dict(wanted.to_dict()), model, example_input(cfg, 1))
    except PlanError as err:
        problems += err.problems
    bad = {p.split(":")[0] for p in problems}
    plan = replace(wanted, layers={p: e for p, e in wanted.layers.items() if p not in bad},
                   groups={g: e for g, e in wanted.groups.items() if g not in bad})
    return (replace(plan, weights_hash=weights_digest(*c.key)) if with_hash else plan), problems


def history() -> list[dict]:
    """Configurations evaluated in this session, oldest first (see the Plan page); ``"plan"`` is the :class:`Plan`."""
    return st.session_state.setdefault("history", [])

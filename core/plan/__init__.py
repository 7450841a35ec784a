"""The compression plan: the document (:mod:`.entry`, :mod:`.document`), how each kind of entry is checked and
applied (:mod:`.kinds`, :mod:`.apply`), its cost without building it (:mod:`.cost`), starting plans
(:mod:`.starting`) and the saved compressed folder (:mod:`.saved`).

>>> model, report = compress(model, cfg, load_plan("plan.yaml"), data="fashion-mnist")  # doctest: +SKIP
"""
from core.plan.apply import ApplyReport, apply_plan, compress, data_needs, validate_plan
from core.plan.document import Plan, PlanError, load_plan, loads_plan, plan_from_dict, save_plan, weights_hash
from core.plan.entry import ATTENTION, GROUP_METHODS, LayerEntry, is_group_method, kind_of

__all__ = [
    "apply_plan",
    "ApplyReport",
    "ATTENTION",
    "compress",
    "data_needs",
    "GROUP_METHODS",
    "is_group_method",
    "kind_of",
    "LayerEntry",
    "load_plan",
    "loads_plan",
    "Plan",
    "plan_from_dict",
    "PlanError",
    "save_plan",
    "validate_plan",
    "weights_hash",
]

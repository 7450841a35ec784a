"""Low-rank decompositions of layers: one module per method, all reachable through one registry.

>>> from core.decompose import get_method
>>> small = get_method("svd").build(nn.Linear(64, 32), 8)        # doctest: +SKIP
>>> get_method("tucker2").cost(conv, (16, 16), input_hw=(28, 28))  # doctest: +SKIP
"""
from core.decompose._cache import CACHE
from core.decompose._specs import Decomposed, LayerSpec, build_plan, conv_patches
from core.decompose.registry import (
    Cost,
    Method,
    applicable_methods,
    factorization,
    get_method,
    list_methods,
    register_method,
)

# Importing a method's module registers it; the order here is the order of list_methods().
from core.decompose import svd, spatial_svd, tucker2, cp, tt, activation_aware, nonlinear, capsule  # noqa: E402,F401  isort: skip
from core.decompose.capsule import CPCapsuleRouting, TuckerCapsuleRouting  # noqa: E402
from core.decompose.nonlinear import fit_outputs  # noqa: E402
from core.decompose.rank_rules import dense_cost, energy_rank, evbmf_rank, ratio_rank, select_ranks, vbmf_rank  # noqa: E402

__all__ = [
    "applicable_methods",
    "build_plan",
    "conv_patches",
    "CACHE",
    "Cost",
    "CPCapsuleRouting",
    "Decomposed",
    "dense_cost",
    "energy_rank",
    "evbmf_rank",
    "factorization",
    "fit_outputs",
    "get_method",
    "LayerSpec",
    "list_methods",
    "Method",
    "ratio_rank",
    "register_method",
    "select_ranks",
    "TuckerCapsuleRouting",
    "vbmf_rank",
]

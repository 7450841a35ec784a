"""The decomposition methods by name: the interface every method implements, and how to find one.

Each method lives in its own module and registers an instance with :func:`register_method`;
importing :mod:`core.decompose` imports them all.

Caching: ``factorization(module, name)`` returns the method's factorization of that layer, an
object whose ``factors(rank)`` gives the factors at a rank. For the nested methods (svd,
spatial_svd, tucker2, tucker2_nl, aa_svd, capsule_tucker) the full SVD / HOSVD is computed once
per weight and a rank is a slice of it; for CP and TT (not nested) the factors are computed per
rank. Both live in one LRU (``core.decompose._cache.CACHE``, 128 entries) keyed by the weight's
identity, version and storage, so a changed weight is never served stale factors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from core.errors import RankscopeError, close_matches_hint


@dataclass(frozen=True)
class Cost:
    """Parameters and FLOPs of a layer; ``flops`` for ONE sample at the given input size (1 MAC = 2 FLOPs)."""

    params: int
    flops: int


@runtime_checkable
class Method(Protocol):
    name: str  # "svd", "spatial_svd", "tucker2", "cp", "tt", "aa_svd", "tucker2_nl", "capsule_tucker", "capsule_cp"
    rank_arity: int  # 1 (rank: int), 2 (ranks: [r_in, r_out]) or 4 (capsule_tucker: one rank per mode of W)
    needs_calibration: bool

    def check(self, module: nn.Module) -> str | None:
        """``None`` if the method applies to ``module``, else ``"not decomposable: <reason>"``."""

    def max_rank(self, module: nn.Module) -> int | tuple[int, ...]:
        """The rank at which the decomposed layer reproduces the original."""

    def cost(self, module: nn.Module, rank: Any, input_hw: tuple[int, int] | None) -> Cost:
        """Params and FLOPs the built layer would have; ``input_hw`` is None for a Linear or capsule layer."""

    def build(self, module: nn.Module, rank: Any, *, calibration: torch.Tensor | None = None, **options: Any) -> nn.Module:
        """A new module with the same inputs and outputs, running the factors; ``module`` is left untouched.

        ``options`` are method-specific (``aa_svd``: damping; ``cp``/``capsule_cp``: n_iter_max, tol,
        random_state; ``tucker2_nl``: steps, lr); an option the method does not take is a RankscopeError.
        """


_METHODS: dict[str, Method] = {}


def register_method(cls: type) -> type:
    """Class decorator: instantiate the method and register it under its ``name``."""
    method = cls()
    if method.name in _METHODS:
        raise ValueError(f"decomposition method {method.name!r} is registered twice")
    _METHODS[method.name] = method
    return cls


def get_method(name: str) -> Method:
    """The method registered under ``name``; :class:`RankscopeError` naming close matches if there is none."""
    try:
        return _METHODS[name]
    except KeyError:
        raise RankscopeError(
            f"unknown decomposition method {name!r}{close_matches_hint(name, list(_METHODS))}; "
            f"known: {', '.join(_METHODS)}"
        ) from None


def list_methods() -> list[str]:
    """Names of all methods, in registration order."""
    return list(_METHODS)


def applicable_methods(module: nn.Module) -> list[str]:
    """Names of the methods whose ``check`` accepts ``module``."""
    return [name for name, method in _METHODS.items() if method.check(module) is None]


def factorization(module: nn.Module, method_name: str, calibration: torch.Tensor | None = None, **options: Any):
    """The cached factorization of ``module`` by a method: an object with ``factors(rank)``.

    See the module docstring for what is cached and how it is keyed.
    """
    return get_method(method_name).factorization(module, calibration, **options)

"""What every decomposition method shares: applicability, rank checks, cost from the plan, cached factors, building."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from core.decompose._cache import CACHE, tensor_key
from core.decompose._specs import LayerSpec, build_plan, plan_cost
from core.decompose.rank import check_rank
from core.decompose.registry import Cost
from core.errors import RankscopeError


def describe(module: nn.Module) -> str:
    return f"{type(module).__name__}({module.extra_repr()})" if module.extra_repr() else type(module).__name__


class PerRank:
    """Factorization of a non-nested method: factors computed (and cached) separately for each rank."""

    def __init__(self, method: "BaseMethod", module: nn.Module, options: dict[str, Any]) -> None:
        self.method, self.module, self.options = method, module, options

    def factors(self, rank):
        key = (self.method.name, rank, tuple(sorted(self.options.items())))
        return CACHE.get(self.method.weight(self.module), key, lambda: self.method.factors_at(self.module, rank, **self.options))


class BaseMethod:
    """Base of the registered methods; a subclass gives ``plan``, ``max_rank``, the factorization and ``layer_weights``.

    Nested methods (``nested = True``) implement ``factorize(module, calibration)`` returning an object
    with ``factors(rank)`` that slices one full factorization; the others implement ``factors_at(module, rank)``.
    """

    name = ""
    rank_arity = 1
    needs_calibration = False
    nested = True
    layer_types: tuple[type, ...] = (nn.Conv2d,)
    options: dict[str, Any] = {}  # build options the method accepts, with their defaults (read-only)

    # --- applicability -------------------------------------------------------------------------
    def reason(self, module: nn.Module) -> str | None:
        """Why the method does not apply (without the "not decomposable" prefix), or ``None``."""
        if not isinstance(module, self.layer_types):
            names = " or ".join(t.__name__ for t in self.layer_types)
            return f"{self.name} needs a {names}, got {type(module).__name__}"
        if isinstance(module, nn.Conv2d) and module.groups > 1 and not self.supports_groups(module):
            return f"{self.name} needs an ungrouped conv (groups={module.groups}); svd and spatial_svd factor each group"
        return None

    def supports_groups(self, module: nn.Module) -> bool:
        return False

    def check(self, module: nn.Module) -> str | None:
        reason = self.reason(module)
        return None if reason is None else f"not decomposable: {reason}"

    def require(self, module: nn.Module) -> None:
        reason = self.check(module)
        if reason is not None:
            raise RankscopeError(f"{describe(module)} is {reason}")

    def resolve_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """``options`` completed with the defaults; :class:`RankscopeError` naming any the method does not take."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            accepted = ", ".join(self.options) or "none"
            raise RankscopeError(f"{self.name} takes no option {', '.join(unknown)} (options it accepts: {accepted})")
        return {**self.options, **options}

    # --- ranks ---------------------------------------------------------------------------------
    def max_rank(self, module: nn.Module):
        raise NotImplementedError

    def validate_rank(self, module: nn.Module, rank):
        """The rank in this method's form, checked against ``1..max_rank`` (:func:`core.decompose.rank.check_rank`)."""
        self.require(module)
        return check_rank(self, module, rank)

    # --- cost and build ------------------------------------------------------------------------
    def plan(self, module: nn.Module, rank) -> list[LayerSpec]:
        raise NotImplementedError

    def cost(self, module: nn.Module, rank, input_hw: tuple[int, int] | None) -> Cost:
        rank = self.validate_rank(module, rank)
        return Cost(*plan_cost(self.plan(module, rank), input_hw))

    @staticmethod
    def weight(module: nn.Module) -> torch.Tensor:
        return module.weight

    def factorization(self, module: nn.Module, calibration: torch.Tensor | None = None, **options: Any):
        """The cached factorization of ``module`` (see :mod:`core.decompose.registry`)."""
        self.require(module)
        if self.needs_calibration and calibration is None:
            raise RankscopeError(f"{self.name} is data-aware: pass calibration= a batch of the layer's inputs")
        options = self.resolve_options(options)
        if not self.nested:
            return PerRank(self, module, options)
        if not self.needs_calibration:
            calibration = None  # a data-free factorization is the same whatever batch the caller has at hand
        key = (self.name, None if calibration is None else tensor_key(calibration), tuple(sorted(options.items())))
        with torch.no_grad():
            return CACHE.get(self.weight(module), key, lambda: self.factorize(module, calibration, **options))

    def factorize(self, module: nn.Module, calibration: torch.Tensor | None, **options: Any):
        raise NotImplementedError

    def factors_at(self, module: nn.Module, rank, **options: Any):
        raise NotImplementedError

    def layer_weights(self, module: nn.Module, rank, factors) -> list[torch.Tensor | None]:
        """The weight of each layer of ``plan(module, rank)``, from the factors at that rank."""
        raise NotImplementedError

    def build(self, module: nn.Module, rank, *, calibration: torch.Tensor | None = None, **options: Any) -> nn.Module:
        rank = self.validate_rank(module, rank)
        with torch.no_grad():
            factors = self.factorization(module, calibration, **options).factors(rank)
            weights = self.layer_weights(module, rank, factors)
            bias = None if module.bias is None else module.bias.detach()
            return build_plan(self.plan(module, rank), weights, bias, module.weight, method=self.name, rank=rank)

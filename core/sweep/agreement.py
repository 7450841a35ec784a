"""How well a proxy table orders the points as the exact sweep does: Kendall's tau and Spearman's rho.

The points compared are the ``(layer, method, rank)`` rows both tables hold (dense rows left out), each scored by
one column, ``loss`` by default: what the allocators read. Both tables add their own dense loss to every point,
a constant that changes no rank. The correlations are computed within each layer (over its points of every
method) and pooled over every point of every layer; pooling is what an allocator relies on, since it weighs one
layer's points against another's. Kendall's tau is scipy's tau-b (ties counted in both tables), Spearman's rho
the correlation of the average ranks. Fewer than two points, or a constant column, give NaN.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
from scipy import stats

from core.errors import RankscopeError
from core.sweep.table import DENSE

KEY = ["layer", "method", "rank"]


@dataclass(frozen=True)
class Agreement:
    """Rank agreement of a proxy table with the exact sweep.

    Attributes
    ----------
    kendall_tau, spearman_rho : pooled over every point both tables hold.
    points : how many points that is.
    layers : one row per layer, in the exact table's order: ``layer, points, kendall_tau, spearman_rho``.
    proxy : the proxy table's ``attrs["proxy"]`` (``""`` when it has none).
    column : the column compared.
    """

    kendall_tau: float
    spearman_rho: float
    points: int
    layers: pd.DataFrame
    proxy: str = ""
    column: str = "loss"

    def summary(self) -> str:
        """One line: ``whitened: Kendall tau 0.812, Spearman rho 0.934 over 99 points``."""
        return (f"{self.proxy or 'proxy'}: Kendall tau {self.kendall_tau:.3f}, Spearman rho {self.spearman_rho:.3f} "
                f"over {self.points} points")


def correlations(x: pd.Series, y: pd.Series) -> tuple[float, float]:
    """``(Kendall tau-b, Spearman rho)`` of two equally long series; NaN for fewer than two points or a constant one."""
    if len(x) < 2 or x.nunique() < 2 or y.nunique() < 2:
        return math.nan, math.nan
    return float(stats.kendalltau(x, y).statistic), float(stats.spearmanr(x, y).statistic)


def agreement(proxy: pd.DataFrame, exact: pd.DataFrame, column: str = "loss") -> Agreement:
    """Kendall's tau and Spearman's rho of ``proxy``'s ``column`` against ``exact``'s, per layer and pooled.

    Parameters
    ----------
    proxy : a table of :func:`core.sweep.proxies.proxy_table` (or any sweep table).
    exact : a table of :func:`core.sweep.sweep`.
    column : the score compared (``loss``, what the allocators minimise, by default).

    Raises
    ------
    RankscopeError
        A table without ``column``, or no point in both tables.
    """
    for name, table in (("proxy", proxy), ("exact", exact)):
        if column not in table.columns:
            raise RankscopeError(f"the {name} table has no {column!r} column")
    points = [t[t["method"] != DENSE][KEY + [column]] for t in (proxy, exact)]
    both = points[0].merge(points[1], on=KEY, suffixes=("_proxy", "_exact"))
    if both.empty:
        raise RankscopeError("the proxy and exact tables share no (layer, method, rank) point")
    x, y = both[f"{column}_proxy"], both[f"{column}_exact"]
    tau, rho = correlations(x, y)
    rows = []
    for layer in dict.fromkeys(points[1]["layer"]):
        mine = both["layer"] == layer
        if mine.any():
            rows.append({"layer": layer, "points": int(mine.sum()), **dict(zip(("kendall_tau", "spearman_rho"),
                                                                               correlations(x[mine], y[mine])))})
    layers = pd.DataFrame(rows, columns=["layer", "points", "kendall_tau", "spearman_rho"])
    return Agreement(tau, rho, len(both), layers, str(proxy.attrs.get("proxy", "")), column)

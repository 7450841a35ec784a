"""Rank agreement of a proxy table with the exact sweep: Kendall's tau and Spearman's rho, per layer and pooled."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from core.errors import RankscopeError
from core.sweep import agreement
from core.sweep.table import DENSE, MODEL


def table(points: dict[str, list[float]], dense: float = 0.3, proxy: str = "") -> pd.DataFrame:
    """A minimal sweep table: the model row, a dense row per layer, then ``svd`` points at ranks 1, 2, ... per layer."""
    rows = [{"layer": MODEL, "method": DENSE, "rank": "", "loss": dense}]
    rows += [{"layer": layer, "method": DENSE, "rank": "", "loss": dense} for layer in points]
    rows += [{"layer": layer, "method": "svd", "rank": str(i + 1), "loss": dense + value}
             for layer, values in points.items() for i, value in enumerate(values)]
    frame = pd.DataFrame(rows)
    frame.attrs["proxy"] = proxy
    return frame


EXACT = {"a": [3.0, 2.0, 1.0], "b": [5.0, 4.0]}


def test_identical_tables_agree_perfectly():
    found = agreement(table(EXACT, proxy="energy"), table(EXACT))
    assert (found.points, found.proxy, found.column) == (5, "energy", "loss")
    assert found.kendall_tau == pytest.approx(1.0) and found.spearman_rho == pytest.approx(1.0)
    assert found.layers[["layer", "points"]].to_dict("list") == {"layer": ["a", "b"], "points": [3, 2]}
    assert found.layers[["kendall_tau", "spearman_rho"]].to_numpy().ravel().tolist() == pytest.approx([1.0] * 4)


def test_a_reversed_order_is_minus_one():
    reverse = {layer: [-v for v in values] for layer, values in EXACT.items()}
    found = agreement(table(reverse, dense=7.0), table(EXACT))  # another dense loss shifts every point: no rank changes
    assert found.kendall_tau == pytest.approx(-1.0) and found.spearman_rho == pytest.approx(-1.0)
    assert found.layers["kendall_tau"].tolist() == pytest.approx([-1.0, -1.0])


def test_a_hand_made_two_layer_example():
    """Exact 1 2 3 | 4 5 against proxy 1 3 2 | 5 4. Pooled: 2 of 10 pairs discordant, tau = (8 - 2) / 10 = 0.6;
    rank differences 0 1 1 1 1, rho = 1 - 6 * 4 / (5 * 24) = 0.8. Layer a: tau = (2 - 1) / 3, rho = 1 - 6 * 2 / (3 * 8)
    = 0.5; layer b: -1, -1."""
    exact = table({"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0]})
    proxy = table({"a": [1.0, 3.0, 2.0], "b": [5.0, 4.0], "c": [9.0]})  # c: in the proxy only, left out
    found = agreement(proxy, exact)
    assert found.points == 5
    assert found.kendall_tau == pytest.approx(0.6) and found.spearman_rho == pytest.approx(0.8)
    assert found.layers["kendall_tau"].tolist() == pytest.approx([1 / 3, -1.0])
    assert found.layers["spearman_rho"].tolist() == pytest.approx([0.5, -1.0])
    assert found.summary() == "proxy: Kendall tau 0.600, Spearman rho 0.800 over 5 points"


def test_a_layer_of_one_point_or_a_constant_score_has_no_correlation():
    found = agreement(table({"a": [1.0, 2.0], "b": [4.0], "c": [1.0, 1.0]}), table({"a": [1.0, 2.0], "b": [3.0], "c": [1.0, 2.0]}))
    assert found.layers["kendall_tau"].iloc[0] == pytest.approx(1.0)
    assert math.isnan(found.layers["kendall_tau"].iloc[1]) and math.isnan(found.layers["spearman_rho"].iloc[2])


def test_tables_without_common_points_or_the_column_are_refused():
    with pytest.raises(RankscopeError, match="share no"):
        agreement(table({"x": [1.0, 2.0]}), table(EXACT))
    with pytest.raises(RankscopeError, match="no 'top1' column"):
        agreement(table(EXACT), table(EXACT), column="top1")

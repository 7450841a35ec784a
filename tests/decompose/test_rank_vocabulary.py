"""The one rank vocabulary: text and plan forms round-trip, checks name the range, floats are fractions."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st
from torch import nn

from core.decompose import get_method
from core.decompose.rank import (
    check_rank, parse_rank, plan_value, rank_at, rank_fraction, rank_grid, rank_problem, rank_text, resolve_rank,
)
from core.errors import RankscopeError


@given(st.one_of(st.integers(1, 4096), st.tuples(st.integers(1, 512), st.integers(1, 512)),
                 st.tuples(*[st.integers(1, 64)] * 4)))
def test_text_and_plan_forms_round_trip(rank):
    arity = 1 if isinstance(rank, int) else len(rank)
    assert parse_rank(rank_text(rank), arity) == rank
    assert parse_rank(plan_value(rank), arity) == rank


def test_text_forms():
    assert rank_text(8) == "8" and rank_text((8, 4)) == "8x4" and rank_text(None) == ""
    assert parse_rank("8 x 4") == (8, 4) and parse_rank("8, 4", 2) == (8, 4) and parse_rank("5") == 5
    assert parse_rank([5]) == (5,) and parse_rank([5], 1) == 5
    for bad, arity, pattern in (("a", None, "not an integer"), ("4x4", 1, "has 2 values; the method takes 1"),
                                (True, None, "must be an integer"), (2.5, None, "must be an integer")):
        with pytest.raises(RankscopeError, match=pattern):
            parse_rank(bad, arity)


def test_checks_against_a_layer():
    conv = nn.Conv2d(16, 32, 3)
    tucker = get_method("tucker2")
    assert rank_problem(tucker, conv, (16, 32)) is None
    assert rank_problem(tucker, conv, (17, 2)) == "rank out of range (17 not in 1..16)"
    assert rank_problem(tucker, conv, 4) == "tucker2 takes 2 ranks, got 1"
    assert rank_problem(tucker, conv, None) == "tucker2 needs ranks: [2 integers]"
    assert check_rank(tucker, conv, [4, 8]) == (4, 8)
    with pytest.raises(RankscopeError, match=r"rank \(0, 8\) for tucker2 on Conv2d.* must be 2 integers"):
        check_rank(tucker, conv, (0, 8))


def test_a_float_is_a_fraction_of_full_rank_and_an_int_a_rank():
    linear, svd = nn.Linear(40, 20), get_method("svd")
    assert resolve_rank(svd, linear, 0.25) == rank_at(svd, linear, 0.25) == 5
    assert resolve_rank(svd, linear, 5) == 5 and rank_fraction(svd, linear, 5) == 0.25
    with pytest.raises(RankscopeError, match=r"fractional rank must be in \(0, 1\)"):
        resolve_rank(svd, linear, 1.5)
    grid = rank_grid(svd, linear, 5)
    assert grid[0] == 1 and grid[-1] == 20 and grid == sorted(set(grid))

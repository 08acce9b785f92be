"""The one scope filter (`devices.scope`): SQL predicate, parameters and its Python twin.
What PostgreSQL makes of the predicate is checked in tests/integration/test_auth_matrix.py."""

from __future__ import annotations

import pytest

from devices.scope import INDUSTRIES, Scope, UnknownIndustry, industries, like_escape, under


def test_like_metacharacters_are_escaped() -> None:
    assert like_escape("a%b_c\\d") == "a\\%b\\_c\\\\d"
    assert like_escape("江西省/赣州市") == "江西省/赣州市"


def test_predicate_matches_whole_segments_with_escaped_patterns() -> None:
    where, params = Scope(regions=("zone/1", "50%_off\\x/")).sql(first=3)
    assert where == "(region = $3 OR region LIKE $4 OR region = $5 OR region LIKE $6)"
    assert params == ["zone/1", "zone/1/%", "50%_off\\x", "50\\%\\_off\\\\x/%"]


def test_filters_narrow_the_token_scope_and_never_replace_it() -> None:
    scope = Scope(regions=("zone/1",), industries=("school",)).narrowed("zone/10", ("hospital", "school"))
    where, params = scope.sql(region_col="a.region", industry_col="u.industry")
    assert where == ("(a.region = $1 OR a.region LIKE $2) AND (a.region = $3 OR a.region LIKE $4)"
                     " AND u.industry = ANY($5::text[]) AND u.industry = ANY($6::text[])")
    assert params == ["zone/1", "zone/1/%", "zone/10", "zone/10/%", ["school"], ["hospital", "school"]]
    assert not scope.sees("zone/10", "school")
    assert not scope.sees("zone/1", "school")  # the filter zone/10 is outside zone/1
    assert Scope(regions=("zone/1",)).narrowed("zone/1/a").sees("zone/1/a/b", None)


def test_nothing_to_filter_is_true() -> None:
    assert Scope().sql() == ("TRUE", [])
    assert Scope(regions=("",)).sql() == ("TRUE", [])
    assert Scope().sees(None, None)


def test_python_twin_uses_whole_segments_and_industries() -> None:
    scope = Scope(regions=("zone/1",), industries=("hospital",))
    assert scope.sees("zone/1", "hospital") and scope.sees("zone/1/ward", "hospital")
    assert not scope.sees("zone/10", "hospital")
    assert not scope.sees("zone/1", "school")
    assert not scope.sees("zone/1", None)  # an alarm of no unit has no industry
    assert under("zone/1/x", "zone/1/") and not under("zone/1x", "zone/1") and under("anything", "")


def test_industries_are_checked() -> None:
    assert industries(["school,hospital", "school"]) == ("hospital", "school")
    with pytest.raises(UnknownIndustry) as bad:
        industries(["market"])
    assert all(name in str(bad.value) for name in INDUSTRIES)

"""Trend warnings on synthetic weekly histories whose alerts are known in advance, the Poisson tail
against the textbook sum, and the group aggregates against plain Python."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.risk_trend import aggregate, group_index, poisson_upper_tail, region_prefix, trend_alerts, weekly_matrix


def tail(k: int, lam: float) -> float:
    return max(0.0, 1 - sum(math.exp(-lam) * lam**j / math.factorial(j) for j in range(k)))


# Twelve baseline weeks (a repeating pattern, so the baseline mean is exact) then the current week.
HISTORIES = {
    "steady, a normal week": ([1, 2, 3, 2] * 3, 3),  # λ = 2: P(X >= 3) = 0.32
    "steady, then a jump": ([1, 2, 3, 2] * 3, 14),  # λ = 2: P(X >= 14) ≈ 1e-7
    "steady, a bad but plausible week": ([1, 2, 3, 2] * 3, 6),  # λ = 2: P(X >= 6) = 0.017
    "busy district, a busy week": ([38, 42, 40, 40] * 3, 55),  # λ = 40: P(X >= 55) ≈ 0.013
    "busy district, an outbreak": ([38, 42, 40, 40] * 3, 70),  # λ = 40: P(X >= 70) ≈ 1e-5
    "silent until now, 3 alarms": ([0] * 12, 3),  # floored λ = 0.5: P(X >= 3) = 0.014
    "silent until now, 5 alarms": ([0] * 12, 5),  # floored λ = 0.5: P(X >= 5) = 1.7e-4
    "silent until now, 2 alarms": ([0] * 12, 2),  # below min_count whatever the tail
}
EXPECTED = {"steady, then a jump", "busy district, an outbreak", "silent until now, 5 alarms"}


def test_known_histories_raise_exactly_the_expected_warnings() -> None:
    names = list(HISTORIES)
    weekly = np.array([[*base, now] for base, now in HISTORIES.values()], float)
    alerts = trend_alerts(names, weekly)
    assert {a.group for a in alerts} == EXPECTED
    jump = next(a for a in alerts if a.group == "steady, then a jump")
    assert (jump.count, jump.baseline, jump.weeks, jump.severity) == (14, 2.0, 12, "warning")
    assert math.isclose(jump.p_value, tail(14, 2.0), rel_tol=1e-6)
    assert jump.why.startswith("14 alarms in the last 7 days against a baseline of 2.0/week over the previous 12 weeks")
    silent = next(a for a in alerts if a.group == "silent until now, 5 alarms")
    assert silent.baseline == 0.5  # the floor, not 0


def test_a_seeded_poisson_history_with_one_jump() -> None:
    rng = np.random.default_rng(7)
    weekly = rng.poisson([[2.0], [5.0], [1.0]], size=(3, 13)).astype(float)
    weekly[:, -1] = [2, 25, 1]  # only the second group jumps
    assert [a.group for a in trend_alerts(["a", "b", "c"], weekly)] == ["b"]


def test_thresholds_are_parameters() -> None:
    weekly = np.array([[1, 2, 3, 2] * 3 + [6]], float)
    assert trend_alerts(["g"], weekly) == []
    assert [a.group for a in trend_alerts(["g"], weekly, p_max=0.05)] == ["g"]
    assert trend_alerts(["g"], weekly, p_max=0.05, min_count=7) == []


def test_no_trend_without_a_baseline_week() -> None:
    assert trend_alerts(["a"], np.array([[50.0]])) == []
    assert trend_alerts([], np.zeros((0, 13))) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.floats(0.01, 40)), min_size=1, max_size=20))
def test_poisson_tail_matches_the_textbook_sum(pairs: list[tuple[int, float]]) -> None:
    got = poisson_upper_tail(np.array([k for k, _ in pairs]), np.array([lam for _, lam in pairs]))
    for i, (k, lam) in enumerate(pairs):
        assert math.isclose(got[i], tail(k, lam), abs_tol=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.integers(0, 30), min_size=6, max_size=6), min_size=1, max_size=12))
def test_trend_alerts_match_a_scalar_reference(rows: list[list[int]]) -> None:
    names = [f"g{i}" for i in range(len(rows))]
    got = {a.group: a.count for a in trend_alerts(names, np.array(rows, float), p_max=0.01, min_count=3)}
    expected = {}
    for name, row in zip(names, rows, strict=True):
        lam = max(sum(row[:-1]) / 5, 0.5)
        if row[-1] >= 3 and tail(row[-1], lam) < 0.01:
            expected[name] = row[-1]
    assert got == expected


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(-1, 3), st.integers(-2, 15), st.integers(1, 9)), max_size=40))
def test_weekly_matrix_matches_a_loop(rows: list[tuple[int, int, int]]) -> None:
    g = np.array([r[0] for r in rows], np.int64)
    age = np.array([r[1] for r in rows], np.int64)
    c = np.array([r[2] for r in rows], np.float64)
    got = weekly_matrix(g, age, c, 4, 13)
    expected = np.zeros((4, 13))
    for gi, a, n in rows:
        if gi >= 0 and 0 <= a < 13:
            expected[gi, 12 - a] += n
    assert (got == expected).all()


def test_region_prefixes_and_group_index() -> None:
    regions = ["江西省/赣州市/章贡区/南外街道", "江西省/赣州市/南康区", "江西省/南昌市/东湖区/公园街道", ""]
    assert region_prefix(regions, 2) == ["江西省/赣州市", "江西省/赣州市", "江西省/南昌市", ""]
    names, index = group_index(region_prefix(regions, 2))
    assert names == ["", "江西省/南昌市", "江西省/赣州市"] and index.tolist() == [2, 2, 1, 0]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c/d", "c"]), st.floats(0, 100), st.integers(0, 3)), min_size=1,
                max_size=50))
def test_aggregates_match_plain_python(rows: list[tuple[str, float, int]]) -> None:
    got = aggregate([r[0] for r in rows], np.array([r[1] for r in rows]), np.array([r[2] for r in rows], np.int8))
    groups: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for key, score, colour in rows:
        groups[key].append((score, colour))
    assert [g.group for g in got] == sorted(groups)
    for g in got:
        members = groups[g.group]
        assert g.units == len(members)
        assert g.by_colour == tuple(sum(1 for _, c in members if c == k) for k in range(4))
        assert math.isclose(g.mean_score, sum(s for s, _ in members) / len(members), abs_tol=1e-9)
        assert g.max_score == max(s for s, _ in members)

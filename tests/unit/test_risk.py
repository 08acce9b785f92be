"""Risk grading and trend warnings on synthetic histories with known answers, and against scalar references."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.risk import COLOURS, UnitInputs, poisson_upper_tail, trend_alerts, unit_scores


def inputs(**over: list) -> UnitInputs:
    n = len(next(iter(over.values())))
    base = {
        "active_by_severity": [[0, 0, 0, 0]] * n, "active_immediate_fire": [0] * n, "fires_90d": [0] * n,
        "false_alarms_90d": [0] * n, "devices": [10] * n, "offline": [0] * n, "faulty": [0] * n,
        "low_battery": [0] * n, "tamper_open": [0] * n, "working": [10] * n,
    }
    base.update(over)
    return UnitInputs(**{k: np.array(v, dtype=np.float64) for k, v in base.items()})


def test_known_units_get_their_colours() -> None:
    x = inputs(
        active_by_severity=[[0, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]],
        active_immediate_fire=[0, 0, 0, 1, 0, 0],
        false_alarms_90d=[0, 8, 0, 0, 0, 0],
        working=[10, 10, 10, 10, 0, 10],
        offline=[0, 0, 0, 0, 10, 3],
    )
    score, colour = unit_scores(x)
    names = [COLOURS[c] for c in colour]
    # healthy; many false alarms (16); one major alarm (20) + none; immediate fire; no working detector (40+25); 30 % offline
    assert names == ["green", "yellow", "yellow", "red", "red", "green"]
    assert score[4] == 65.0 and math.isclose(score[5], 7.5)


def scalar_score(a: list[float], fires: float, false: float, devices: float, offline: float, faulty: float,
                 low: float, tamper: float, working: float) -> float:
    alarms = min(40 * a[0] + 20 * a[1] + 8 * a[2] + 3 * a[3], 60)
    history = min(15 * fires + 2 * false, 30)
    n = max(devices, 1)
    health = min(25 * offline / n + 15 * faulty / n + 10 * low / n + 10 * tamper, 40)
    return min(alarms + history + health + (40 if working <= 0 else 0), 100)


small = st.integers(0, 5)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.lists(small, min_size=4, max_size=4), small, small, st.integers(0, 30), small, small,
                          small, small, small, small), min_size=1, max_size=30))
def test_vectorized_scores_match_the_scalar_reference(units: list) -> None:
    x = UnitInputs(
        active_by_severity=np.array([u[0] for u in units], float), active_immediate_fire=np.array([u[1] for u in units], float),
        fires_90d=np.array([u[2] for u in units], float), false_alarms_90d=np.array([u[3] for u in units], float),
        devices=np.array([u[4] for u in units], float), offline=np.array([u[5] for u in units], float),
        faulty=np.array([u[6] for u in units], float), low_battery=np.array([u[7] for u in units], float),
        tamper_open=np.array([u[8] for u in units], float), working=np.array([u[9] for u in units], float),
    )
    score, colour = unit_scores(x)
    for i, u in enumerate(units):
        expected = scalar_score(u[0], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9])
        assert math.isclose(score[i], expected, abs_tol=1e-9)
        red = u[1] > 0 or expected >= 60
        assert COLOURS[colour[i]] == ("red" if red else "orange" if expected >= 35 else "yellow" if expected >= 15 else "green")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.floats(0.01, 30)), min_size=1, max_size=20))
def test_poisson_tail_matches_the_textbook_sum(pairs: list[tuple[int, float]]) -> None:
    k = np.array([p[0] for p in pairs])
    lam = np.array([p[1] for p in pairs])
    got = poisson_upper_tail(k, lam)
    for i, (kk, ll) in enumerate(pairs):
        expected = 1 - sum(math.exp(-ll) * ll**j / math.factorial(j) for j in range(kk))
        assert math.isclose(got[i], max(0.0, expected), abs_tol=1e-9)


def test_trend_alert_only_for_the_group_that_jumped() -> None:
    rng = np.random.default_rng(3)
    weeks = rng.poisson(2.0, size=(3, 13)).astype(float)
    weeks[1, -1] = 14  # religion venues: a sudden jump
    weeks[2, -1] = 4  # health: a little above its baseline, within chance
    alerts = trend_alerts(["civil_affairs", "religion", "health"], weeks)
    assert [a.group for a in alerts] == ["religion"]
    assert alerts[0].count == 14 and "baseline" in alerts[0].why


def test_no_trend_without_history_or_with_few_alarms() -> None:
    assert trend_alerts(["a"], np.array([[5.0]])) == []
    assert trend_alerts(["a"], np.array([[0.0, 0.0, 0.0, 2.0]])) == []

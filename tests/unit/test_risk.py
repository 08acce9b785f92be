"""Four-colour scoring: synthetic units whose scores and colours are worked out by hand (docs/risk.md),
and the vectorized pass against a plain scalar reference."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.risk import COLOURS, THRESHOLDS, UnitInputs, unit_scores

FIELDS = ("active_by_severity", "active_immediate_fire", "fires_90d", "false_alarms_90d", "devices", "offline",
          "faulty", "low_battery", "tamper_open", "working", "work_orders_open", "work_orders_overdue",
          "shielded_points", "override")


def unit(**over: object) -> dict[str, object]:
    """A healthy unit of 10 online detectors, with `over` changed."""
    base: dict[str, object] = {"active_by_severity": [0, 0, 0, 0], "active_immediate_fire": 0, "fires_90d": 0,
                               "false_alarms_90d": 0, "devices": 10, "offline": 0, "faulty": 0, "low_battery": 0,
                               "tamper_open": 0, "working": 10, "work_orders_open": 0, "work_orders_overdue": 0,
                               "shielded_points": 0, "override": 0}
    return {**base, **over}


def inputs(units: list[dict[str, object]]) -> UnitInputs:
    return UnitInputs(**{f: np.array([u[f] for u in units], np.float64) for f in FIELDS})


# name: (unit, expected score, expected colour) -- each worked out from the weights in docs/risk.md
KNOWN = {
    "healthy school": (unit(), 0.0, "green"),
    "kitchen, 8 false alarms": (unit(false_alarms_90d=8), 16.0, "yellow"),
    "one open major alarm": (unit(active_by_severity=[0, 1, 0, 0]), 20.0, "yellow"),
    "3 of 10 offline": (unit(offline=3, working=7), 7.5, "green"),
    "2 tampered, 5 low battery": (unit(tamper_open=2, low_battery=5), 25.0, "yellow"),
    "major open + 2 fires this quarter": (unit(active_by_severity=[0, 1, 0, 0], fires_90d=2), 50.0, "orange"),
    "only water sensors": (unit(devices=2, working=0), 40.0, "orange"),
    "no devices at all": (unit(devices=0, working=0), 40.0, "orange"),
    "critical open + major open": (unit(active_by_severity=[1, 1, 0, 0]), 60.0, "red"),
    "immediate fire, otherwise quiet": (unit(active_immediate_fire=1, active_by_severity=[0, 1, 0, 0]), 20.0, "red"),
    "every detector offline and faulty": (unit(offline=10, faulty=10, working=0), 80.0, "red"),
    "everything at once, capped": (unit(active_by_severity=[3, 3, 3, 3], fires_90d=9, offline=10, faulty=10, working=0,
                                        tamper_open=4), 100.0, "red"),
    "2 open work orders, 1 overdue, 1 shielded point": (
        unit(work_orders_open=2, work_orders_overdue=1, shielded_points=1), 18.0, "yellow"),
    "upkeep capped at 20": (unit(work_orders_open=5, work_orders_overdue=5, shielded_points=5), 20.0, "yellow"),
    "red by score, overridden green": (unit(active_by_severity=[1, 1, 0, 0], override=1), 60.0, "green"),
    "healthy, overridden orange": (unit(override=3), 0.0, "orange"),
}


def test_known_units_get_their_scores_and_colours() -> None:
    s = unit_scores(inputs([u for u, _, _ in KNOWN.values()]))
    got = {name: (float(s.score[i]), COLOURS[s.colour[i]]) for i, name in enumerate(KNOWN)}
    assert got == {name: (score, colour) for name, (_, score, colour) in KNOWN.items()}


def test_parts_explain_the_score() -> None:
    s = unit_scores(inputs([unit(active_by_severity=[0, 1, 0, 0], fires_90d=1, offline=4, working=0)]))
    assert s.parts[0].tolist() == [20.0, 15.0, 10.0, 40.0, 0.0]
    assert s.score[0] == 85.0


def test_no_units() -> None:
    s = unit_scores(UnitInputs.zeros(0))
    assert s.score.shape == (0,) and s.colour.shape == (0,) and s.parts.shape == (0, 5)


def scalar_score(u: dict) -> float:
    a = u["active_by_severity"]
    alarms = min(40 * a[0] + 20 * a[1] + 8 * a[2] + 3 * a[3], 60)
    history = min(15 * u["fires_90d"] + 2 * u["false_alarms_90d"], 30)
    n = max(u["devices"], 1)
    health = min((25 * u["offline"] + 15 * u["faulty"] + 10 * u["low_battery"]) / n + 10 * u["tamper_open"], 40)
    upkeep = min(3 * u["work_orders_open"] + 8 * u["work_orders_overdue"] + 4 * u["shielded_points"], 20)
    return min(alarms + history + health + (40 if u["working"] <= 0 else 0) + upkeep, 100)


def scalar_colour(u: dict, score: float) -> str:
    if u["active_immediate_fire"] > 0 or score >= 60:
        return "red"
    return "orange" if score >= 35 else "yellow" if score >= 15 else "green"


small = st.integers(0, 6)
unit_strategy = st.fixed_dictionaries({
    "active_by_severity": st.lists(small, min_size=4, max_size=4), "active_immediate_fire": st.integers(0, 2),
    "fires_90d": small, "false_alarms_90d": st.integers(0, 30), "devices": st.integers(0, 50), "offline": small,
    "faulty": small, "low_battery": small, "tamper_open": st.integers(0, 3), "working": small,
    "work_orders_open": small, "work_orders_overdue": small, "shielded_points": small, "override": st.just(0),
})


@settings(max_examples=300, deadline=None)
@given(st.lists(unit_strategy, min_size=1, max_size=40))
def test_vectorized_scores_match_the_scalar_reference(units: list[dict]) -> None:
    s = unit_scores(inputs(units))
    for i, u in enumerate(units):
        expected = scalar_score(u)
        assert math.isclose(s.score[i], expected, abs_tol=1e-9)
        if all(abs(expected - t) > 1e-9 for t in THRESHOLDS):  # float rounding may fall either side of a bound
            assert COLOURS[s.colour[i]] == scalar_colour(u, expected)
        assert 0 <= s.score[i] <= 100 and math.isclose(min(s.parts[i].sum(), 100), s.score[i])


@settings(max_examples=100, deadline=None)
@given(st.lists(unit_strategy, min_size=1, max_size=20), st.data())
def test_one_more_alarm_never_lowers_a_score(units: list[dict], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(units) - 1))
    sev = data.draw(st.integers(0, 3))
    worse = [dict(u) for u in units]
    worse[i] = {
        **worse[i], "active_by_severity": [c + (j == sev) for j, c in enumerate(worse[i]["active_by_severity"])]
    }
    before, after = unit_scores(inputs(units)), unit_scores(inputs(worse))
    assert after.score[i] >= before.score[i] and after.colour[i] >= before.colour[i]
    others = np.arange(len(units)) != i
    assert (after.score[others] == before.score[others]).all()

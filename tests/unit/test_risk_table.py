"""The incremental risk table: row-by-row updates end where a computation from scratch ends."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.risk import UnitInputs, unit_scores
from alerting.risk_table import ALARM_INPUTS, HEALTH_INPUTS, RiskTable, UnitRow

IDS = [f"U{i:02d}" for i in range(12)]


def alarm_values(rng: np.random.Generator, n: int) -> UnitInputs:
    x = UnitInputs.zeros(n)
    x.active_by_severity[:] = rng.integers(0, 3, (n, 4))
    x.active_immediate_fire[:] = rng.integers(0, 2, n) * (rng.random(n) < 0.2)
    x.fires_90d[:] = rng.integers(0, 3, n)
    x.false_alarms_90d[:] = rng.integers(0, 10, n)
    return x


def health(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    devices = rng.integers(0, 8, n).astype(float)
    off = np.minimum(rng.integers(0, 4, n), devices)
    return {"devices": devices, "offline": off, "faulty": np.minimum(rng.integers(0, 2, n), devices),
            "low_battery": np.zeros(n), "tamper_open": rng.integers(0, 2, n).astype(float), "working": devices - off}


def test_reindex_keeps_the_inputs_of_units_that_stay() -> None:
    t = RiskTable()
    assert t.reindex([UnitRow("A", "r", "i"), UnitRow("B", "r", "i")]) == ["A", "B"]
    x = UnitInputs.zeros(2)
    x.active_by_severity[1] = [1, 0, 0, 0]
    t.set_alarm_inputs(np.arange(2), x)
    t.rescore(1)
    assert [t.colour(i) for i in range(2)] == ["orange", "red"]  # no working detector 40; B + critical 40
    assert t.reindex([UnitRow("0", "r", "i"), UnitRow("B", "r2", "i")]) == ["0"]
    assert t.index == {"0": 0, "B": 1} and t.inputs.active_by_severity[1].tolist() == [1, 0, 0, 0]
    assert t.inputs.active_by_severity[0].tolist() == [0, 0, 0, 0] and t.units[1].region == "r2"


def test_rescore_answers_the_units_whose_colour_changed() -> None:
    t = RiskTable()
    t.reindex([UnitRow(u, "", "") for u in ("A", "B", "C")])
    t.set_health({"devices": np.full(3, 5.0), "offline": np.zeros(3), "faulty": np.zeros(3), "low_battery": np.zeros(3),
                  "tamper_open": np.zeros(3), "working": np.full(3, 5.0)})
    assert t.rescore(1).tolist() == [0, 1, 2]  # new units are changes too
    x = UnitInputs.zeros(1)
    x.active_immediate_fire[0] = 1
    t.set_alarm_inputs(np.array([2]), x)
    assert t.rescore(2).tolist() == [2]
    assert t.row(2, detail=True)["colour"] == "red" and t.row(2, detail=True)["inputs"]["active_immediate_fire"] == 1
    assert t.rescore(3).tolist() == []


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.lists(st.tuples(st.sets(st.sampled_from(IDS), min_size=1),
                                                      st.sets(st.sampled_from(IDS))), min_size=1, max_size=6))
def test_incremental_updates_equal_a_full_computation(seed: int, steps: list[tuple[set[str], set[str]]]) -> None:
    """Each step: the unit list becomes `present`; units in `touched` (and new ones) get new alarm
    inputs, as the service re-reads them. The table must equal scoring the latest inputs afresh."""
    rng = np.random.default_rng(seed)
    t = RiskTable()
    truth: dict[str, UnitInputs] = {}  # every unit's latest alarm inputs (one row each)
    for present, touched in steps:
        units = [UnitRow(u, f"r/{u}", "i") for u in sorted(present)]
        new = t.reindex(units)
        dirty = sorted((set(new) | touched) & present)
        values = alarm_values(rng, len(dirty))
        rows = np.array([t.index[u] for u in dirty], np.int64)
        t.set_alarm_inputs(rows, values)
        for j, u in enumerate(dirty):
            truth[u] = values.take(np.array([j]))
        h = health(rng, len(units))
        t.set_health(h)
        t.rescore(0)

        fresh = UnitInputs.zeros(len(units))
        for i, u in enumerate(units):
            for name in ALARM_INPUTS:
                getattr(fresh, name)[i] = getattr(truth[u.unit_id], name)[0]
        for name in HEALTH_INPUTS:
            getattr(fresh, name)[:] = h[name]
        expected = unit_scores(fresh)
        assert (t.scores.score == expected.score).all() and (t.scores.colour == expected.colour).all()

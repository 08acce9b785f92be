"""Unit-level 秒响应: distinct detectors within 120 s, electrical then smoke within 300 s."""

from __future__ import annotations

import pytest

from alerting.config import RuleConfig
from alerting.core import Correlator
from alerting.model import AlarmType, Decision, Response, Severity
from devices.fleet import Fleet
from devices.kinds import Kind
from tests.unit.reference_rules import T0, columns, reading


@pytest.fixture
def fleet() -> Fleet:
    fleet = Fleet(capacity=4)
    for device_id, kind, unit in [("s1", Kind.smoke, "u1"), ("s2", Kind.smoke, "u1"), ("g1", Kind.gas, "u1"),
                                  ("e1", Kind.electrical, "u1"), ("s9", Kind.smoke, "u9"), ("n1", Kind.smoke, None),
                                  ("n2", Kind.smoke, None), ("uitd-1:1:1:1", Kind.uitd, "u1"),
                                  ("uitd-1:1:1:2", Kind.uitd, "u1")]:
        fleet.upsert(device_id, kind, unit_id=unit)
    return fleet


def units(decisions: list[Decision]) -> list[Decision]:
    return [d for d in decisions if d.key.startswith("unit:")]


def run(fleet: Fleet, *readings, core: Correlator | None = None, now: int = T0 + 1000) -> list[Decision]:
    return (core or Correlator()).evaluate(columns(fleet, list(readings)), fleet, now)


@pytest.mark.parametrize(("gap_s", "fires"), [(119, True), (120, True), (121, False)])
def test_two_detectors_of_a_unit_within_120_s(fleet: Fleet, gap_s: int, fires: bool) -> None:
    got = run(fleet, reading("s1", Kind.smoke, "alarm", T0), reading("s2", Kind.smoke, "alarm", T0 + gap_s * 1000))
    singles = [d for d in got if d.key.startswith("device:")]
    assert [d.response for d in singles] == [Response.verify, Response.verify]  # single alarms stay verify
    fire = units(got)
    assert len(fire) == (1 if fires else 0)
    if fires:
        d = fire[0]
        assert (d.key, d.type, d.severity, d.response, d.rule) == (
            "unit:u1", AlarmType.fire, Severity.critical, Response.immediate, "unit.multi_detector")
        assert d.device_ids == ["s1", "s2"] and d.unit_id == "u1" and d.ts_ms == T0 + gap_s * 1000
        assert [(e["device_id"], e["type"]) for e in d.evidence] == [("s1", "smoke"), ("s2", "smoke")]


def test_the_window_spans_batches(fleet: Fleet) -> None:
    core = Correlator()
    assert units(run(fleet, reading("s1", Kind.smoke, "alarm", T0), core=core)) == []
    gas = reading("g1", Kind.gas, "report", T0 + 100_000, gas_lel_pct=12.0)
    d = units(run(fleet, gas, core=core, now=T0 + 101_000))[0]
    assert d.device_ids == ["s1", "g1"]
    assert d.evidence[0] == {"device_id": "s1", "ts_ms": T0, "event": "alarm", "type": "smoke"}  # remembered


@pytest.mark.parametrize(("later_ms", "remembered"), [(300_000, True), (300_001, False)])
def test_memory_is_service_time(fleet: Fleet, later_ms: int, remembered: bool) -> None:
    core = Correlator(RuleConfig(correlation_memory_s=300))
    run(fleet, reading("s1", Kind.smoke, "alarm", T0), core=core, now=T0)
    # a report delayed in a gateway meets its partner while the partner is remembered
    got = run(fleet, reading("g1", Kind.gas, "alarm", T0 + 60_000), core=core, now=T0 + later_ms)
    assert bool(units(got)) == remembered


def test_the_same_detector_twice_is_not_two_detectors(fleet: Fleet) -> None:
    twice = run(fleet, reading("s1", Kind.smoke, "alarm", T0), reading("s1", Kind.smoke, "alarm", T0 + 10_000))
    assert units(twice) == []


def test_other_units_and_devices_without_a_unit_do_not_correlate(fleet: Fleet) -> None:
    assert units(run(fleet, reading("s1", Kind.smoke, "alarm", T0), reading("s9", Kind.smoke, "alarm", T0))) == []
    assert units(run(fleet, reading("n1", Kind.smoke, "alarm", T0), reading("n2", Kind.smoke, "alarm", T0))) == []


def test_panel_components_are_detectors_of_their_own(fleet: Fleet) -> None:
    got = units(run(fleet, reading("uitd-1:1:1:1", Kind.uitd, "alarm", T0),
                    reading("uitd-1:1:1:2", Kind.uitd, "alarm", T0 + 5000)))
    assert [d.device_ids for d in got] == [["uitd-1:1:1:1", "uitd-1:1:1:2"]]


def test_suppressed_alarms_do_not_count(fleet: Fleet) -> None:
    fleet.mute_until_ms[fleet.slot("s2")] = T0 + 3_600_000
    assert units(run(fleet, reading("s1", Kind.smoke, "test", T0), reading("g1", Kind.gas, "alarm", T0))) == []
    assert units(run(fleet, reading("s1", Kind.smoke, "alarm", T0), reading("s2", Kind.smoke, "alarm", T0))) == []


@pytest.mark.parametrize(("gap_s", "fires"), [(299, True), (300, True), (301, False), (-300, True), (-301, False)])
def test_electrical_and_smoke_within_300_s(fleet: Fleet, gap_s: int, fires: bool) -> None:
    got = units(run(fleet, reading("e1", Kind.electrical, "report", T0, residual_current_ma=[450]),
                    reading("s1", Kind.smoke, "alarm", T0 + gap_s * 1000)))
    assert [(d.key, d.rule, d.response) for d in got] == (
        [("unit:u1", "unit.electrical_then_smoke", Response.immediate)] if fires else [])
    if fires:
        assert sorted(d.device_ids for d in got)[0] == ["e1", "s1"] if gap_s > 0 else ["s1", "e1"]


def test_multi_detector_names_the_rule_when_both_hold(fleet: Fleet) -> None:
    got = units(run(fleet, reading("e1", Kind.electrical, "report", T0, arc_faults=30),
                    reading("s1", Kind.smoke, "alarm", T0), reading("g1", Kind.gas, "alarm", T0)))
    assert [(d.rule, sorted(d.device_ids)) for d in got] == [("unit.multi_detector", ["e1", "g1", "s1"])]


def test_electrical_alarms_alone_are_not_fire(fleet: Fleet) -> None:
    electrical = reading("e1", Kind.electrical, "report", T0, residual_current_ma=[450], arc_faults=30)
    assert units(run(fleet, electrical)) == []

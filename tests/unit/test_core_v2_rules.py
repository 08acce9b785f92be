"""The v2 alarm types (CONTRACT §10) through the pure Correlator: for each row of the table a case
that raises and one that does not, at the thresholds' edges, and their clears."""

from __future__ import annotations

import numpy as np
import pytest

from alerting.config import RuleConfig
from alerting.core import Correlator
from alerting.core.rules import DEFAULTS, RULES
from alerting.model import AlarmType, Decision, Response, Severity
from alerting.response.targets import CLIMBING_TYPES
from devices.catalogue import ALARM_TYPES
from devices.fleet import Fleet
from devices.kinds import Kind
from devices.reading import Reading
from tests.unit.reference_rules import T0, columns, reading

MIN = 60_000


def fleet_of(*devices: tuple[str, Kind], unit: str | None = "u1") -> Fleet:
    fleet = Fleet(capacity=4)
    for device_id, kind in devices:
        fleet.upsert(device_id, kind, unit_id=unit)
    return fleet


def run(fleet: Fleet, *readings: Reading, core: Correlator | None = None) -> list[Decision]:
    """Evaluate the readings one batch each, in order, applying each to the fleet as the service does."""
    core = core or Correlator()
    out: list[Decision] = []
    for r in readings:
        b = columns(fleet, [r])
        out += core.evaluate(b, fleet, r.ts_ms + 1000)
        fleet.apply(b)
    return out


def raised(decisions: list[Decision]) -> list[tuple[str, str, str, str]]:
    return [(d.type.name, d.severity.name, d.response.name, d.rule) for d in decisions if d.action == "raise"]


def cleared(decisions: list[Decision]) -> list[tuple[str, str]]:
    return [(d.type.name, d.rule) for d in decisions if d.action == "clear"]


# --- water ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("pressure", "fires"), [(0.049, True), (0.05, False)])
def test_water_pressure_low(pressure: float, fires: bool) -> None:
    fleet = fleet_of(("w1", Kind.water))
    got = raised(run(fleet, reading("w1", Kind.water, "report", T0, pressure_mpa=pressure)))
    assert got == ([("water_pressure_low", "major", "verify", "water.pressure_low")] if fires else [])


def test_water_pressure_low_per_device_from_gb_50974() -> None:
    fleet = fleet_of(("w1", Kind.water))
    fleet.set_thresholds(0, {"pressure_low_mpa": 0.10})
    assert raised(run(fleet, reading("w1", Kind.water, "report", T0, pressure_mpa=0.09)))[0][0] == "water_pressure_low"
    assert raised(run(fleet, reading("w1", Kind.water, "report", T0 + MIN, pressure_mpa=0.10))) == []


def test_panel_analog_values_go_through_the_level_rules_only() -> None:
    fleet = fleet_of(("uitd-1", Kind.uitd), ("1:1:7", Kind.uitd))
    low = reading("1:1:7", Kind.uitd, "report", T0, pressure_mpa=0.0)
    assert raised(run(fleet, low)) == [("water_pressure_low", "major", "verify", "water.pressure_low")]
    fleet = fleet_of(("1:1:7", Kind.uitd))
    fleet.set_thresholds(0, {"pressure_low_mpa": 0.01})
    fell = [reading("1:1:7", Kind.uitd, "report", T0, pressure_mpa=0.3),
            reading("1:1:7", Kind.uitd, "report", T0 + 10_000, pressure_mpa=0.1)]
    assert raised(run(fleet, *fell)) == []  # a 0.2 MPa fall of GB/T 26875 analog values is no pressure drop


@pytest.mark.parametrize(("limit", "pressure", "fires"), [(None, 5.0, False), (1.2, 1.21, True), (1.2, 1.2, False)])
def test_water_pressure_high_is_off_until_set(limit: float | None, pressure: float, fires: bool) -> None:
    fleet = fleet_of(("w1", Kind.water))
    fleet.set_thresholds(0, {"pressure_high_mpa": limit})
    got = raised(run(fleet, reading("w1", Kind.water, "report", T0, pressure_mpa=pressure)))
    assert got == ([("water_pressure_high", "minor", "verify", "water.pressure_high")] if fires else [])


@pytest.mark.parametrize(("after", "apart_s", "fires"), [
    (0.25, 30, True), (0.26, 30, False), (0.25, 60, True), (0.20, 61, False),
])
def test_water_pressure_drop_between_readings_at_most_60_s_apart(after: float, apart_s: int, fires: bool) -> None:
    fleet = fleet_of(("w1", Kind.water))
    got = raised(run(fleet, reading("w1", Kind.water, "report", T0, pressure_mpa=0.30),
                     reading("w1", Kind.water, "report", T0 + apart_s * 1000, pressure_mpa=after)))
    assert got == ([("water_pressure_drop", "major", "verify", "water.pressure_drop")] if fires else [])


def test_water_pressure_drop_in_one_batch_and_twice_the_resolution() -> None:
    fleet = fleet_of(("w1", Kind.water))
    b = columns(fleet, [reading("w1", Kind.water, "report", T0, pressure_mpa=0.300),
                        reading("w1", Kind.water, "report", T0 + 5000, pressure_mpa=0.240)])
    assert [d.rule for d in Correlator().evaluate(b, fleet, T0 + 6000)] == ["water.pressure_drop"]
    fleet = fleet_of(("w1", Kind.water))
    fleet.set_thresholds(0, {"pressure_drop_mpa": 0.001})  # below twice the 0.001 MPa resolution
    assert raised(run(fleet, reading("w1", Kind.water, "report", T0, pressure_mpa=0.300),
                      reading("w1", Kind.water, "report", T0 + 5000, pressure_mpa=0.299))) == []
    assert raised(run(fleet, reading("w1", Kind.water, "report", T0 + 10_000, pressure_mpa=0.297)))[0][0] == \
        "water_pressure_drop"


@pytest.mark.parametrize(("limit", "level", "fires"), [(None, 0.0, False), (1.0, 0.99, True), (1.0, 1.0, False)])
def test_water_level_low_is_off_until_set(limit: float | None, level: float, fires: bool) -> None:
    fleet = fleet_of(("t1", Kind.water))
    fleet.set_thresholds(0, {"level_low_m": limit})
    got = raised(run(fleet, reading("t1", Kind.water, "report", T0, level_m=level)))
    assert got == ([("water_level_low", "major", "verify", "water.level_low")] if fires else [])


@pytest.mark.parametrize(("hydrant", "flow", "fires"), [(True, 1.01, True), (True, 1.0, False), (False, 30.0, False)])
def test_hydrant_open_by_flow_only_on_a_registered_hydrant(hydrant: bool, flow: float, fires: bool) -> None:
    fleet = fleet_of(("h1", Kind.water))
    fleet.set_hydrant(0, hydrant)
    got = raised(run(fleet, reading("h1", Kind.water, "report", T0, flow_m3h=flow)))
    assert got == ([("hydrant_open", "major", "verify", "water.hydrant_flow")] if fires else [])


def test_hydrant_open_event_in_maintenance_and_hydrant_close() -> None:
    fleet = fleet_of(("h1", Kind.water))
    assert raised(run(fleet, reading("h1", Kind.water, "hydrant_open", T0))) == \
        [("hydrant_open", "major", "verify", "water.hydrant_open")]
    closed = run(fleet, reading("h1", Kind.water, "hydrant_close", T0 + MIN))
    assert cleared(closed) == [("hydrant_open", "hydrant_close")]
    fleet.set_maintenance(0, True)
    assert raised(run(fleet, reading("h1", Kind.water, "hydrant_open", T0 + 2 * MIN))) == \
        [("hydrant_open", "major", "none", "suppressed.maintenance")]
    assert raised(run(fleet_of(("s1", Kind.smoke)), reading("s1", Kind.smoke, "hydrant_open", T0))) == []


@pytest.mark.parametrize(("event", "tilt", "fires", "rule"), [
    ("impact", None, True, "water.impact"), ("report", 15.0, True, "water.hydrant_tilt"),
    ("report", 14.9, False, ""),
])
def test_hydrant_damaged(event: str, tilt: float | None, fires: bool, rule: str) -> None:
    fleet = fleet_of(("h1", Kind.water))
    got = raised(run(fleet, reading("h1", Kind.water, event, T0, **({} if tilt is None else {"tilt_deg": tilt}))))
    assert got == ([("hydrant_damaged", "major", "verify", rule)] if fires else [])


def test_water_alarm_clear_clears_every_water_type() -> None:
    got = run(fleet_of(("w1", Kind.water)), reading("w1", Kind.water, "alarm_clear", T0))
    assert {t for t, _ in cleared(got)} == {t.name for t in (
        AlarmType.water_pressure_low, AlarmType.water_pressure_high, AlarmType.water_pressure_drop,
        AlarmType.water_level_low, AlarmType.hydrant_open, AlarmType.hydrant_damaged)}


# --- chargers ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("temps", "port"), [([30.0, 70.0, 65.0], 2), ([71.0], 1), ([30.0, 69.9], None)])
def test_charger_overheat_names_the_hottest_port(temps: list[float], port: int | None) -> None:
    fleet = fleet_of(("c1", Kind.charger))
    got = run(fleet, reading("c1", Kind.charger, "report", T0, port_temp_c=temps))
    if port is None:
        assert got == []
        return
    (d,) = got
    assert (d.type, d.rule) == (AlarmType.charger_overheat, "charger.port_temp")
    assert d.evidence[0]["port"] == port and d.evidence[0]["port_temp_c"] == max(temps)


@pytest.mark.parametrize(("later", "fires"), [(61.0, True), (59.0, False)])
def test_charger_overheat_by_rise(later: float, fires: bool) -> None:
    fleet = fleet_of(("c1", Kind.charger))
    got = raised(run(fleet, reading("c1", Kind.charger, "report", T0, port_temp_c=[40.0, 50.0]),
                     reading("c1", Kind.charger, "report", T0 + MIN, port_temp_c=[40.0, later])))
    assert got == ([("charger_overheat", "major", "verify", "charger.port_rise")] if fires else [])


def test_charger_events_overtemp_overcurrent_leakage() -> None:
    fleet = fleet_of(("c1", Kind.charger))
    got = run(fleet, reading("c1", Kind.charger, "overtemp", T0, port=3),
              reading("c1", Kind.charger, "overcurrent", T0 + 1000), reading("c1", Kind.charger, "leakage", T0 + 2000))
    assert raised(got) == [("charger_overheat", "major", "verify", "charger.overtemp"),
                           ("charger_overcurrent", "major", "verify", "charger.overcurrent"),
                           ("charger_leakage", "critical", "verify", "charger.leakage")]
    assert got[0].evidence[0]["port"] == 3
    assert raised(run(fleet_of(("e1", Kind.electrical)), reading("e1", Kind.electrical, "overtemp", T0))) == []


@pytest.mark.parametrize(("apart_s", "current", "fires"), [(30, 16.1, True), (29, 16.1, False), (60, 16.0, False)])
def test_charger_overcurrent_in_readings_30_s_apart(apart_s: int, current: float, fires: bool) -> None:
    fleet = fleet_of(("c1", Kind.charger))
    fleet.set_thresholds(0, {"port_rated_a": 16.0})
    got = raised(run(fleet, reading("c1", Kind.charger, "report", T0, port_current_a=[2.0, current]),
                     reading("c1", Kind.charger, "report", T0 + apart_s * 1000, port_current_a=[current, 1.0])))
    assert got == ([("charger_overcurrent", "major", "verify", "charger.current")] if fires else [])


def test_charger_overcurrent_needs_an_unbroken_run_and_a_rating() -> None:
    fleet = fleet_of(("c1", Kind.charger))
    fleet.set_thresholds(0, {"port_rated_a": 16.0})
    assert raised(run(fleet, reading("c1", Kind.charger, "report", T0, port_current_a=[20.0]),
                      reading("c1", Kind.charger, "report", T0 + 20_000, port_current_a=[10.0]),
                      reading("c1", Kind.charger, "report", T0 + 40_000, port_current_a=[20.0]))) == []
    assert raised(run(fleet, reading("c1", Kind.charger, "heartbeat", T0 + 50_000),  # no value: the run goes on
                      reading("c1", Kind.charger, "report", T0 + 70_000, port_current_a=[20.0]))) == \
        [("charger_overcurrent", "major", "verify", "charger.current")]
    unrated = fleet_of(("c2", Kind.charger))
    assert raised(run(unrated, reading("c2", Kind.charger, "report", T0, port_current_a=[99.0]),
                      reading("c2", Kind.charger, "report", T0 + MIN, port_current_a=[99.0]))) == []


@pytest.mark.parametrize(("ma", "severity"), [(14.9, None), (15.0, "major"), (29.9, "major"), (30.0, "critical")])
def test_charger_leakage(ma: float, severity: str | None) -> None:
    fleet = fleet_of(("c1", Kind.charger))
    got = raised(run(fleet, reading("c1", Kind.charger, "report", T0, residual_current_ma=ma)))
    rule = "charger.leakage_critical" if severity == "critical" else "charger.leakage_warn"
    assert got == ([("charger_leakage", severity, "verify", rule)] if severity else [])


def test_a_charger_alarm_and_smoke_make_a_fire() -> None:
    fleet = fleet_of(("c1", Kind.charger), ("s1", Kind.smoke))
    got = run(fleet, reading("c1", Kind.charger, "report", T0, port_temp_c=[75.0]),
              reading("s1", Kind.smoke, "alarm", T0 + 200_000))
    assert [(d.type.name, d.rule) for d in got if d.key == "unit:u1"] == [("fire", "unit.electrical_then_smoke")]


# --- pyrolysis --------------------------------------------------------------------------------
def test_pyrolysis_alarm_is_a_pyrolysis_warning_not_residual_current() -> None:
    fleet = fleet_of(("p1", Kind.electrical))
    assert raised(run(fleet, reading("p1", Kind.electrical, "alarm", T0, "pyrolysis", pyrolysis_index=20.0))) == \
        [("pyrolysis_warning", "major", "verify", "pyrolysis.alarm")]
    assert raised(run(fleet, reading("p1", Kind.electrical, "alarm", T0 + MIN, pyrolysis_index=20.0))) == \
        [("pyrolysis_warning", "major", "verify", "electrical.alarm")]


@pytest.mark.parametrize(("index", "severity", "rule"), [
    (49.0, None, ""), (50.0, "major", "pyrolysis.index"), (79.0, "major", "pyrolysis.index"),
    (80.0, "critical", "pyrolysis.critical"),
])
def test_pyrolysis_index(index: float, severity: str | None, rule: str) -> None:
    fleet = fleet_of(("p1", Kind.electrical))
    got = raised(run(fleet, reading("p1", Kind.electrical, "report", T0, pyrolysis_index=index)))
    assert got == ([("pyrolysis_warning", severity, "verify", rule)] if severity else [])


@pytest.mark.parametrize(("before", "apart_s", "severity"), [
    (30.0, 30, "critical"), (31.0, 30, "major"), (30.0, 61, "major"),
])
def test_pyrolysis_rise_of_20_within_60_s_is_critical(before: float, apart_s: int, severity: str) -> None:
    fleet = fleet_of(("p1", Kind.electrical))
    got = raised(run(fleet, reading("p1", Kind.electrical, "report", T0, pyrolysis_index=before),
                     reading("p1", Kind.electrical, "report", T0 + apart_s * 1000, pyrolysis_index=50.0)))
    assert [(t, s) for t, s, _, _ in got] == [("pyrolysis_warning", severity)]


def test_pyrolysis_is_never_fire_class_alone_but_counts_with_smoke() -> None:
    fleet = fleet_of(("p1", Kind.electrical), ("p2", Kind.electrical), ("s1", Kind.smoke))
    core = Correlator()
    two = run(fleet, reading("p1", Kind.electrical, "report", T0, pyrolysis_index=90.0),
              reading("p2", Kind.electrical, "report", T0 + 1000, pyrolysis_index=90.0), core=core)
    assert [d for d in two if d.type is AlarmType.fire] == []
    with_smoke = run(fleet, reading("s1", Kind.smoke, "alarm", T0 + 2000), core=core)
    assert [(d.type.name, d.rule) for d in with_smoke if d.key == "unit:u1"] == [("fire", "unit.electrical_then_smoke")]


# --- carbon monoxide --------------------------------------------------------------------------
@pytest.mark.parametrize(("metrics", "code", "want"), [
    ({"gas_type": "co"}, None, "co_high"), ({"co_ppm": 20.0}, None, "co_high"), ({}, "co", "co_high"),
    ({"gas_type": "methane"}, None, "gas_leak"), ({}, None, "gas_leak"),
])
def test_a_co_detectors_alarm_is_co_high_never_gas_leak(metrics: dict, code: str | None, want: str) -> None:
    fleet = fleet_of(("g1", Kind.gas))
    (d,) = run(fleet, reading("g1", Kind.gas, "alarm", T0, code, **metrics))
    assert (d.type.name, d.severity, d.response) == (want, Severity.major, Response.verify)


def test_a_detector_that_reported_co_ppm_before_is_a_co_detector() -> None:
    fleet = fleet_of(("g1", Kind.gas))
    run(fleet, reading("g1", Kind.gas, "report", T0, co_ppm=5.0))
    assert raised(run(fleet, reading("g1", Kind.gas, "alarm", T0 + MIN)))[0][0] == "co_high"
    assert cleared(run(fleet, reading("g1", Kind.gas, "alarm_clear", T0 + 2 * MIN))) == \
        [("gas_leak", "alarm_clear"), ("co_high", "alarm_clear")]


@pytest.mark.parametrize(("ppm", "fires"), [(300.0, True), (299.0, False)])
def test_co_critical_in_any_reading(ppm: float, fires: bool) -> None:
    got = raised(run(fleet_of(("g1", Kind.gas)), reading("g1", Kind.gas, "report", T0, co_ppm=ppm)))
    assert got == ([("co_high", "critical", "immediate", "co.critical")] if fires else [])


@pytest.mark.parametrize(("ppm", "minutes", "rule"), [
    (50.0, 60, "co.held"), (50.0, 59, None), (49.0, 90, None), (100.0, 10, "co.held_short"), (100.0, 9, None),
])
def test_co_held(ppm: float, minutes: int, rule: str | None) -> None:
    fleet = fleet_of(("g1", Kind.gas))
    series = [reading("g1", Kind.gas, "report", T0 + m * MIN, co_ppm=ppm) for m in range(0, minutes + 1, 1)]
    got = raised(run(fleet, *series))
    assert got == ([("co_high", "major", "verify", rule)] if rule else [])


def test_co_hold_is_broken_by_a_lower_reading() -> None:
    fleet = fleet_of(("g1", Kind.gas))
    got = run(fleet, reading("g1", Kind.gas, "report", T0, co_ppm=120.0),
              reading("g1", Kind.gas, "report", T0 + 5 * MIN, co_ppm=80.0),
              reading("g1", Kind.gas, "report", T0 + 10 * MIN, co_ppm=120.0),
              reading("g1", Kind.gas, "report", T0 + 19 * MIN, co_ppm=120.0))
    assert raised(got) == []
    assert int(fleet.held_since("co_short")[0]) == T0 + 10 * MIN


def test_co_high_climbs_like_the_fire_class() -> None:
    assert CLIMBING_TYPES == {t.name for t, s in ALARM_TYPES.items() if s.fire_class} | {"co_high"}


# --- device states ----------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "code", "want"), [
    (Kind.uitd, None, ("power_fault", "minor", "verify", "power.fail")),
    (Kind.uitd, "mains_and_backup", ("power_fault", "major", "verify", "power.mains_and_backup")),
    (Kind.gas, None, ("power_fault", "minor", "verify", "power.fail")),
    (Kind.smoke, None, None),
])
def test_power_fault(kind: Kind, code: str | None, want: tuple | None) -> None:
    fleet = fleet_of(("d1", kind))
    assert raised(run(fleet, reading("d1", kind, "power_fail", T0, code))) == ([want] if want else [])
    assert cleared(run(fleet, reading("d1", kind, "power_restore", T0 + MIN))) == \
        ([("power_fault", "power_restore")] if want else [])


@pytest.mark.parametrize(("kind", "fires"), [(Kind.uitd, True), (Kind.smoke, False)])
def test_panel_supervisory(kind: Kind, fires: bool) -> None:
    fleet = fleet_of(("1:1:9", kind))
    assert raised(run(fleet, reading("1:1:9", kind, "supervisory", T0))) == \
        ([("panel_supervisory", "major", "verify", "panel.supervisory")] if fires else [])
    assert cleared(run(fleet, reading("1:1:9", kind, "supervisory_clear", T0 + MIN))) == \
        ([("panel_supervisory", "supervisory_clear")] if fires else [])


@pytest.mark.parametrize(("command_s_before", "fires"), [(None, True), (60, False), (120, False), (121, True)])
def test_breaker_tripped_unless_commanded(command_s_before: int | None, fires: bool) -> None:
    fleet = fleet_of(("e1", Kind.electrical))
    if command_s_before is not None:
        fleet.note_command(0, "breaker_trip", T0 - command_s_before * 1000)
    fleet.note_command(0, "reboot", T0)  # not a noted command
    assert raised(run(fleet, reading("e1", Kind.electrical, "breaker_tripped", T0))) == \
        ([("breaker_tripped", "minor", "verify", "breaker.tripped")] if fires else [])
    assert cleared(run(fleet, reading("e1", Kind.electrical, "breaker_closed", T0 + MIN))) == \
        [("breaker_tripped", "breaker_closed")]


def test_linkage_failed_is_a_type_the_core_knows_but_never_raises() -> None:
    assert DEFAULTS[AlarmType.linkage_failed] == (Severity.major, Response.verify)
    assert "linkage.failed" in RULES and len(set(RULES)) == len(RULES)


def test_held_state_outlives_the_batch_in_the_fleet() -> None:
    fleet = fleet_of(("g1", Kind.gas))
    core = Correlator(RuleConfig(co_short_hold_s=0))
    run(fleet, reading("g1", Kind.gas, "report", T0, co_ppm=150.0), core=core)
    assert np.array_equal(fleet.held_since("co_short")[:1], [T0])
    later = run(fleet, reading("g1", Kind.gas, "report", T0 + 10 * MIN, co_ppm=150.0), core=Correlator())
    assert raised(later)[0][3] == "co.held_short"  # a new core (a restart) carries on from the fleet

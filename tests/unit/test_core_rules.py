"""Single-reading rules of the correlation core: thresholds at their boundaries, rate of rise,
per-device overrides, faults, battery transitions and suppression."""

from __future__ import annotations

import numpy as np
import pytest

from alerting.config import RuleConfig
from alerting.core import Correlator
from alerting.core.rules import DEFAULTS
from alerting.model import AlarmType, Decision, Response, Severity
from devices.fleet import THRESHOLD_NAMES, Fleet
from devices.kinds import Kind
from tests.unit.reference_rules import T0, columns, reading


def fleet_of(*devices: tuple[str, Kind], unit: str | None = "u1") -> Fleet:
    fleet = Fleet(capacity=4)
    for device_id, kind in devices:
        fleet.upsert(device_id, kind, unit_id=unit)
    return fleet


def evaluate(fleet: Fleet, *readings, now: int = T0 + 1000, core: Correlator | None = None) -> list[Decision]:
    return (core or Correlator()).evaluate(columns(fleet, list(readings)), fleet, now)


def only(decisions: list[Decision]) -> Decision:
    assert len(decisions) == 1, decisions
    return decisions[0]


def summary(d: Decision) -> tuple[str, str, str, str, str]:
    return d.action, d.type.name, d.severity.name, d.response.name, d.rule


def test_every_threshold_has_a_default() -> None:
    defaults = RuleConfig().threshold_defaults()
    assert set(defaults) == set(THRESHOLD_NAMES)
    assert defaults["gas_lel_critical_pct"] == 25 and defaults["smoke_temp_c"] == 57
    assert defaults["battery_pct_min"] == 20


def test_memory_must_cover_the_windows() -> None:
    with pytest.raises(ValueError):
        RuleConfig(correlation_memory_s=100)


# --- smoke ------------------------------------------------------------------------------------
def test_smoke_alarm_is_major_verify_with_evidence() -> None:
    fleet = fleet_of(("s1", Kind.smoke))
    d = only(evaluate(fleet, reading("s1", Kind.smoke, "alarm", T0, temperature_c=31.5, smoke_obscuration_pct_m=4.2)))
    assert summary(d) == ("raise", "smoke", "major", "verify", "smoke.single")
    assert d.key == "device:s1" and d.device_ids == ["s1"] and d.unit_id == "u1" and d.ts_ms == T0
    assert d.evidence == [{"row": 0, "device_id": "s1", "ts_ms": T0, "event": "alarm", "temperature_c": 31.5,
                           "smoke_obscuration_pct_m": 4.2}]


@pytest.mark.parametrize(
    ("temp", "response", "rule"), [(56.9, "verify", "smoke.single"), (57.0, "immediate", "smoke.heat")]
)
def test_smoke_alarm_with_heat_is_immediate(temp: float, response: str, rule: str) -> None:
    fleet = fleet_of(("s1", Kind.smoke))
    d = only(evaluate(fleet, reading("s1", Kind.smoke, "alarm", T0, temperature_c=temp)))
    assert (d.response.name, d.rule) == (response, rule)


def test_heat_without_an_alarm_event_is_a_verify_smoke_alarm() -> None:
    fleet = fleet_of(("s1", Kind.smoke))
    assert summary(only(evaluate(fleet, reading("s1", Kind.smoke, "report", T0, temperature_c=60.0)))) == \
        ("raise", "smoke", "major", "verify", "smoke.heat_only")
    assert evaluate(fleet, reading("s1", Kind.smoke, "report", T0, temperature_c=56.0)) == []


@pytest.mark.parametrize(("now_temp", "response"), [(28.0, "immediate"), (27.9, "verify")])
def test_rise_against_the_fleets_previous_sample(now_temp: float, response: str) -> None:
    fleet = fleet_of(("s1", Kind.smoke))
    fleet.apply(columns(fleet, [reading("s1", Kind.smoke, "report", T0 - 60_000, temperature_c=20.0)]))
    d = only(evaluate(fleet, reading("s1", Kind.smoke, "alarm", T0, temperature_c=now_temp)))
    assert d.response.name == response
    assert d.rule == ("smoke.rise" if response == "immediate" else "smoke.single")
    if response == "immediate":
        assert d.evidence[0]["rise_per_min"] == pytest.approx(8.0)


def test_rise_within_one_batch_uses_the_newest_sample_old_enough() -> None:
    fleet = fleet_of(("s1", Kind.smoke))
    batch = [reading("s1", Kind.smoke, "report", T0 - 30_000, temperature_c=20.0),  # 30 s before: +5 °C -> 10 °C/min
             reading("s1", Kind.smoke, "report", T0 - 5_000, temperature_c=24.9),  # too recent (< 15 s) to measure from
             reading("s1", Kind.smoke, "alarm", T0, temperature_c=25.0)]
    assert [d.rule for d in evaluate(fleet, *batch)] == ["smoke.rise"]
    slow = RuleConfig(rise_min_span_s=1)  # now measured against the 5 s old sample: 1.2 °C/min
    assert [d.rule for d in evaluate(fleet, *batch, core=Correlator(slow))] == ["smoke.single"]


def test_no_rise_without_a_previous_sample() -> None:
    fleet = fleet_of(("s1", Kind.smoke))
    assert only(evaluate(fleet, reading("s1", Kind.smoke, "alarm", T0, temperature_c=40.0))).rule == "smoke.single"


# --- gas --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("lel", "expected"), [
    (9.9, None),
    (10.0, ("raise", "gas_leak", "major", "verify", "gas.lel_major")),
    (24.9, ("raise", "gas_leak", "major", "verify", "gas.lel_major")),
    (25.0, ("raise", "gas_leak", "critical", "immediate", "gas.lel_critical")),
])
def test_gas_thresholds(lel: float, expected: tuple | None) -> None:
    fleet = fleet_of(("g1", Kind.gas))
    got = evaluate(fleet, reading("g1", Kind.gas, "report", T0, gas_lel_pct=lel))
    assert [summary(d) for d in got] == ([expected] if expected else [])


def test_gas_alarm_event_without_a_value() -> None:
    fleet = fleet_of(("g1", Kind.gas))
    got = only(evaluate(fleet, reading("g1", Kind.gas, "alarm", T0)))
    assert summary(got) == ("raise", "gas_leak", "major", "verify", "gas.alarm")


def test_an_override_holds_after_another_device_drops_its_own() -> None:
    fleet = fleet_of(("g1", Kind.gas), ("g2", Kind.gas), unit=None)
    fleet.set_thresholds(fleet.slot("g1"), {"gas_lel_critical_pct": 15.0})
    fleet.set_thresholds(fleet.slot("g2"), {"gas_lel_critical_pct": 15.0})
    fleet.set_thresholds(fleet.slot("g2"), {})
    got = evaluate(fleet, reading("g1", Kind.gas, "report", T0, gas_lel_pct=16.0),
                   reading("g2", Kind.gas, "report", T0, gas_lel_pct=16.0))
    assert {d.key: d.severity for d in got} == {"device:g1": Severity.critical, "device:g2": Severity.major}


def test_per_device_threshold_overrides_the_default() -> None:
    fleet = fleet_of(("g1", Kind.gas), ("g2", Kind.gas), unit=None)  # no unit: no multi-detector fire
    fleet.set_thresholds(fleet.slot("g1"), {"gas_lel_critical_pct": 15.0})
    got = evaluate(fleet, reading("g1", Kind.gas, "report", T0, gas_lel_pct=16.0),
                   reading("g2", Kind.gas, "report", T0, gas_lel_pct=16.0))
    assert {d.key: d.severity for d in got} == {"device:g1": Severity.critical, "device:g2": Severity.major}


# --- electrical, water, panel -------------------------------------------------------------------
@pytest.mark.parametrize(("metric", "below", "at", "type_"), [
    ("residual_current_ma", 299.0, 300.0, "residual_current"),
    ("cable_temp_c", 69.9, 70.0, "cable_overheat"),
    ("arc_faults", 13, 14, "arc_fault"),
    ("voltage_v", 263.9, 264.0, "overvoltage"),
])
def test_electrical_thresholds(metric: str, below: float, at: float, type_: str) -> None:
    fleet = fleet_of(("e1", Kind.electrical))
    listed = metric != "arc_faults"
    below_limit = reading("e1", Kind.electrical, "report", T0, **{metric: [1.0, below] if listed else below})
    assert evaluate(fleet, below_limit) == []
    d = only(evaluate(fleet, reading("e1", Kind.electrical, "report", T0, **{metric: [1.0, at] if listed else at})))
    assert (d.type.name, d.response) == (type_, Response.verify)
    assert d.evidence[0][metric] == at  # the channel maximum


def test_several_electrical_limits_make_several_alarms() -> None:
    fleet = fleet_of(("e1", Kind.electrical))
    got = evaluate(
        fleet, reading("e1", Kind.electrical, "report", T0, residual_current_ma=[400], arc_faults=20, voltage_v=[230])
    )
    assert sorted(d.type.name for d in got) == ["arc_fault", "residual_current"]


def test_cable_rising_fast_overheats() -> None:
    fleet = fleet_of(("e1", Kind.electrical))
    fleet.apply(columns(fleet, [reading("e1", Kind.electrical, "report", T0 - 120_000, cable_temp_c=[30.0])]))
    d = only(evaluate(fleet, reading("e1", Kind.electrical, "report", T0, cable_temp_c=[50.0])))  # 10 °C/min
    assert (d.type, d.rule) == (AlarmType.cable_overheat, "electrical.cable_rise")
    assert evaluate(fleet, reading("e1", Kind.electrical, "report", T0, cable_temp_c=[49.0])) == []


def test_cable_rising_fast_within_one_batch_overheats() -> None:
    # both samples are asked for a rise, and the earlier one is the other's previous sample
    fleet = fleet_of(("e1", Kind.electrical))
    batch = [reading("e1", Kind.electrical, "heartbeat", T0 - 60_000, cable_temp_c=[30.0]),
             reading("e1", Kind.electrical, "heartbeat", T0, cable_temp_c=[41.0])]  # 11 °C/min
    d = only(evaluate(fleet, *batch))
    assert (d.type, d.rule, d.ts_ms) == (AlarmType.cable_overheat, "electrical.cable_rise", T0)


@pytest.mark.parametrize(("code", "type_"), [
    ("residual_current", "residual_current"), ("leakage", "residual_current"), ("over_temperature", "cable_overheat"),
    ("overload", "cable_overheat"), ("short_circuit", "arc_fault"), ("arc_fault", "arc_fault"),
    ("overvoltage", "overvoltage"), ("undervoltage", "overvoltage"),
])
def test_a_device_reported_alarm_code_decides_the_type(code: str, type_: str) -> None:
    fleet = fleet_of(("e1", Kind.electrical))
    # without a code this would be put down to the cable temperature (63/70 is the nearest limit)
    coded = reading("e1", Kind.electrical, "alarm", T0, code, residual_current_ma=[150], cable_temp_c=[63.0])
    d = only(evaluate(fleet, coded))
    assert (d.type.name, d.severity, d.response, d.rule) == (
        type_, *DEFAULTS[AlarmType[type_]], "electrical.alarm_code"
    )


def test_an_alarm_code_adds_to_exceeded_limits_and_needs_an_alarm_event() -> None:
    fleet = fleet_of(("e1", Kind.electrical))
    got = evaluate(fleet, reading("e1", Kind.electrical, "alarm", T0, "over_temperature", residual_current_ma=[400]))
    assert sorted((d.type.name, d.rule) for d in got) == [
        ("cable_overheat", "electrical.alarm_code"), ("residual_current", "electrical.residual_current")]
    d = only(evaluate(fleet, reading("e1", Kind.electrical, "alarm", T0, "leakage", residual_current_ma=[400])))
    assert d.rule == "electrical.residual_current"  # the limit says it already
    assert evaluate(fleet, reading("e1", Kind.electrical, "report", T0, "leakage", residual_current_ma=[100])) == []
    d = only(evaluate(fleet, reading("e1", Kind.electrical, "alarm", T0, "E42", cable_temp_c=[63.0])))
    assert (d.type, d.rule) == (AlarmType.cable_overheat, "electrical.alarm")  # an unknown code: the nearest metric
    d = only(evaluate(fleet, reading("e1", Kind.electrical, "test", T0, "short_circuit")))
    assert (d.type, d.response, d.rule) == (AlarmType.arc_fault, Response.none, "suppressed.test")


def test_electrical_alarm_below_every_limit_is_put_down_to_the_nearest_metric() -> None:
    fleet = fleet_of(("e1", Kind.electrical))
    d = only(
        evaluate(fleet, reading("e1", Kind.electrical, "alarm", T0, residual_current_ma=[150], cable_temp_c=[63.0]))
    )
    assert (d.type, d.rule) == (AlarmType.cable_overheat, "electrical.alarm")  # 63/70 > 150/300


@pytest.mark.parametrize(("pressure", "fires"), [(0.05, False), (0.049, True)])
def test_water_pressure_low(pressure: float, fires: bool) -> None:
    fleet = fleet_of(("w1", Kind.water))
    got = evaluate(fleet, reading("w1", Kind.water, "report", T0, pressure_mpa=pressure))
    expected = [("raise", "water_pressure_low", "major", "verify", "water.pressure_low")] if fires else []
    assert [summary(d) for d in got] == expected


def test_panel_fire_and_fault() -> None:
    fleet = fleet_of(("uitd-7:1:1:9", Kind.uitd))
    assert summary(only(evaluate(fleet, reading("uitd-7:1:1:9", Kind.uitd, "alarm", T0)))) == \
        ("raise", "panel_fire", "critical", "verify", "panel.fire")
    assert summary(only(evaluate(fleet, reading("uitd-7:1:1:9", Kind.uitd, "fault", T0)))) == \
        ("raise", "panel_fault", "minor", "none", "panel.fault")


# --- faults and clears ------------------------------------------------------------------------
def test_fault_tamper_low_battery_events_and_their_clears() -> None:
    fleet = fleet_of(("s1", Kind.smoke))
    got = evaluate(fleet, reading("s1", Kind.smoke, "fault", T0, fault_code="chamber_dirty"),
                   reading("s1", Kind.smoke, "tamper", T0 + 1), reading("s1", Kind.smoke, "low_battery", T0 + 2))
    assert [summary(d) for d in got] == [("raise", "device_fault", "minor", "none", "device.fault"),
                                        ("raise", "tamper", "minor", "none", "device.tamper"),
                                        ("raise", "low_battery", "warning", "none", "device.low_battery")]
    assert got[0].evidence[0]["row"] == 0  # the lifecycle adds fault_code from this reading
    got = evaluate(
        fleet, reading("s1", Kind.smoke, "fault_clear", T0 + 3), reading("s1", Kind.smoke, "tamper_clear", T0 + 4)
    )
    assert [(d.action, d.type.name, d.rule) for d in got] == [
        ("clear", "device_fault", "fault_clear"), ("clear", "tamper", "tamper_clear")
    ]


def test_alarm_clear_clears_every_alarm_type_of_the_kind() -> None:
    fleet = fleet_of(("e1", Kind.electrical))
    got = evaluate(fleet, reading("e1", Kind.electrical, "alarm_clear", T0))
    assert {(d.action, d.key, d.type.name, d.rule) for d in got} == {
        ("clear", "device:e1", t, "alarm_clear")
        for t in ("residual_current", "cable_overheat", "arc_fault", "overvoltage", "pyrolysis_warning")}


def test_low_battery_is_raised_on_the_transition_and_cleared_on_recovery() -> None:
    fleet = fleet_of(("s1", Kind.smoke))

    def step(pct: float, ts: int) -> list[tuple]:
        batch = [reading("s1", Kind.smoke, "heartbeat", ts, battery_pct=pct)]
        out = [(d.action, d.type.name, d.rule) for d in evaluate(fleet, *batch)]
        fleet.apply(columns(fleet, batch))
        return out

    assert step(19.9, T0) == [("raise", "low_battery", "device.low_battery")]
    assert step(15.0, T0 + 1000) == []  # still low: no repeat per heartbeat
    assert step(20.0, T0 + 2000) == [("clear", "low_battery", "battery_ok")]
    assert step(80.0, T0 + 3000) == []


# --- suppression ------------------------------------------------------------------------------
def test_test_event_is_kept_but_not_immediate() -> None:
    fleet = fleet_of(("g1", Kind.gas))
    d = only(evaluate(fleet, reading("g1", Kind.gas, "test", T0, gas_lel_pct=40.0)))
    assert summary(d) == ("raise", "gas_leak", "critical", "none", "suppressed.test")


@pytest.mark.parametrize("how", ["device", "unit"])
def test_maintenance_suppresses_alarms_and_faults(how: str) -> None:
    fleet = Fleet(capacity=4)
    fleet.upsert("s1", Kind.smoke, unit_id="u1", maintenance=how == "device")
    if how == "unit":
        fleet.set_unit("u1", maintenance=True)
    got = evaluate(
        fleet, reading("s1", Kind.smoke, "alarm", T0, temperature_c=80.0), reading("s1", Kind.smoke, "tamper", T0 + 1)
    )
    assert [(d.type.name, d.response, d.rule) for d in got] == [("smoke", Response.none, "suppressed.maintenance"),
                                                                ("tamper", Response.none, "suppressed.maintenance")]


def test_a_muted_device_alarms_with_response_none_until_the_mute_ends() -> None:
    fleet = fleet_of(("s1", Kind.smoke))
    fleet.mute_until_ms[fleet.slot("s1")] = T0 + 60_000
    got = evaluate(fleet, reading("s1", Kind.smoke, "alarm", T0 + 59_999),
                   reading("s1", Kind.smoke, "alarm", T0 + 60_000), reading("s1", Kind.smoke, "fault", T0 + 60_001))
    assert [(d.type.name, d.response.name, d.rule) for d in got] == [
        ("smoke", "none", "suppressed.muted"), ("smoke", "verify", "smoke.single"),
        ("device_fault", "none", "device.fault")]


def test_unknown_slots_are_ignored_and_the_fleet_is_only_read() -> None:
    fleet = fleet_of(("s1", Kind.smoke))
    batch = columns(fleet, [reading("s1", Kind.smoke, "alarm", T0, temperature_c=70.0)])
    batch.slot = np.array([-1], np.int32)
    def state() -> list[np.ndarray]:
        return [
            fleet.flags.copy(), fleet.last_seen_ms.copy(), fleet.last_ts_ms.copy(),
            *(v.copy() for v in fleet.values.values()),
        ]

    before = state()
    assert Correlator().evaluate(batch, fleet, T0) == []
    batch.slot = np.array([0], np.int32)
    assert len(Correlator().evaluate(batch, fleet, T0)) == 1
    assert all(np.array_equal(a, b, equal_nan=a.dtype.kind == "f") for a, b in zip(before, state()))


def test_a_devices_own_mute_event_silences_it_for_mute_s() -> None:
    fleet = fleet_of(("s1", Kind.smoke))
    core = Correlator(RuleConfig(mute_s=600))
    got = evaluate(fleet, reading("s1", Kind.smoke, "alarm", T0 - 1), reading("s1", Kind.smoke, "mute", T0),
                   reading("s1", Kind.smoke, "alarm", T0 + 10_000), core=core)
    assert [d.rule for d in got] == ["smoke.single", "suppressed.muted"]  # an alarm before the mute is not muted
    got = evaluate(fleet, reading("s1", Kind.smoke, "alarm", T0 + 599_999),
                   reading("s1", Kind.smoke, "alarm", T0 + 600_000), core=core)  # the next batch remembers the mute
    assert [d.rule for d in got] == ["suppressed.muted", "smoke.single"]

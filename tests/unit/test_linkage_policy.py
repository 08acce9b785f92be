"""The pure linkage policy (CONTRACT §10): every row of unit policy x device setting, the industries
that may not trip breakers by themselves, and the alarms that never call for linkage."""

from __future__ import annotations

import itertools

import pytest

from alerting.linkage.policy import (
    DEVICE_CAP,
    MODES,
    NO_AUTO_BREAKER,
    AlarmFacts,
    BadPolicy,
    DeviceFacts,
    RefusedPolicy,
    UnitPolicy,
    failed_decision,
    hit_port,
    in_force,
    plan,
    recovered_decision,
    updated,
)
from alerting.model import AlarmType, Response, Severity
from devices.kinds import Kind

GAS = AlarmFacts("gas_leak", "critical", "immediate", "active_unack", "gas.lel_critical", [{"valve": "open"}])
ARC = AlarmFacts("arc_fault", "major", "verify", "active_unack", "electrical.arc")


def gas(linkage: str = "unit", **kw: object) -> DeviceFacts:
    return DeviceFacts("g1", Kind.gas, linkage, reported={"valve": "open"}, **kw)  # type: ignore[arg-type]


def breaker(linkage: str = "unit") -> DeviceFacts:
    return DeviceFacts("e1", Kind.electrical, linkage, reported={"breaker": "closed"})


RANK = {"off": 0, "confirm": 1, "auto": 2}


@pytest.mark.parametrize(("unit_mode", "device"), list(itertools.product(MODES, ("unit", "confirm", "never"))))
def test_gas_valve_every_row(unit_mode: str, device: str) -> None:
    action = plan(GAS, gas(device), UnitPolicy(gas_valve=unit_mode))  # type: ignore[arg-type]
    expected = min(unit_mode, DEVICE_CAP[device], key=RANK.__getitem__)
    if expected == "off":
        assert action is None
    else:
        assert action is not None and action.mode == expected and action.cmd == "valve_close"


@pytest.mark.parametrize(("unit_mode", "device"), list(itertools.product(MODES, ("unit", "confirm", "never", "auto"))))
def test_breaker_trips_by_itself_only_when_both_say_auto(unit_mode: str, device: str) -> None:
    action = plan(ARC, breaker(device), UnitPolicy(breaker=unit_mode))  # type: ignore[arg-type]
    if unit_mode == "off" or device == "never":
        assert action is None
    elif unit_mode == "auto" and device == "auto":
        assert action is not None and action.mode == "auto" and action.cmd == "breaker_trip"
    else:
        assert action is not None and action.mode == "confirm"


def test_inferred_arc_fault_is_only_offered() -> None:
    inferred = AlarmFacts("arc_fault", "major", "verify", "active_unack", "electrical.alarm_code")
    action = plan(inferred, breaker("auto"), UnitPolicy(breaker="auto"))
    assert action is not None and action.mode == "confirm"


def test_response_none_never_links() -> None:
    quiet = AlarmFacts("gas_leak", "critical", "none", "active_unack", "suppressed.test", [{"valve": "open"}])
    assert plan(quiet, gas(), UnitPolicy(gas_valve="auto")) is None


def test_flapping_detector_never_links() -> None:
    assert plan(GAS, gas(flapping=True), UnitPolicy(gas_valve="auto")) is None
    marked = AlarmFacts("gas_leak", "critical", "verify", "active_unack", "flapping", [{"valve": "open"}])
    assert plan(marked, gas(), UnitPolicy(gas_valve="auto")) is None


def test_only_critical_gas_and_co_close_the_valve() -> None:
    policy = UnitPolicy(gas_valve="auto")
    major = AlarmFacts("gas_leak", "major", "verify", "active_unack", "gas.lel_major")
    assert plan(major, gas(), policy) is None
    co = AlarmFacts("co_high", "critical", "immediate", "active_unack", "co.critical")
    action = plan(co, gas(), policy)
    assert action is not None and action.cmd == "valve_close"


def test_no_valve_reported_no_command() -> None:
    bare = DeviceFacts("g1", Kind.gas, "unit", reported={"valve": "none"})
    assert plan(GAS, bare, UnitPolicy(gas_valve="auto")) is None
    assert plan(GAS, DeviceFacts("g1", Kind.gas, "unit"), UnitPolicy(gas_valve="auto")) is None


def test_cleared_alarm_and_other_device_kinds_never_link() -> None:
    cleared = AlarmFacts("gas_leak", "critical", "immediate", "cleared_unack", "gas.lel_critical")
    assert plan(cleared, gas(), UnitPolicy(gas_valve="auto")) is None
    smoke = DeviceFacts("s1", Kind.smoke, "unit", reported={"valve": "open"})
    assert plan(GAS, smoke, UnitPolicy(gas_valve="auto")) is None


def test_charger_ports() -> None:
    policy = UnitPolicy(charger_port="auto")
    charger = DeviceFacts("c1", Kind.charger, "unit")
    hot = AlarmFacts("charger_overheat", "major", "verify", "active_unack", "charger.port_temp",
                     [{"port_temp_c": 80.0, "port": 3}])
    action = plan(hot, charger, policy)
    assert action is not None and action.cmd == "port_cutoff" and action.params == {"port": 3}
    leak = AlarmFacts("charger_leakage", "critical", "verify", "active_unack", "charger.leakage")
    action = plan(leak, charger, policy)
    assert action is not None and action.params == {}  # every port
    assert plan(hot, charger, UnitPolicy()) is None


def test_hit_port_takes_the_newest_named() -> None:
    assert hit_port([{"port": 1}, {"x": 2}, {"port": 4}]) == 4
    assert hit_port([{"port": True}, {"port": 0}]) is None


@pytest.mark.parametrize("industry", sorted(NO_AUTO_BREAKER))
def test_breaker_auto_refused_for_care_industries(industry: str) -> None:
    with pytest.raises(RefusedPolicy):
        updated(UnitPolicy(), {"breaker": "auto"}, industry)
    assert updated(UnitPolicy(), {"breaker": "confirm", "gas_valve": "auto"}, industry).gas_valve == "auto"


def test_a_unit_that_became_a_hospital_only_offers_trips() -> None:
    policy = UnitPolicy(gas_valve="auto", breaker="auto")
    assert in_force(policy, "hospital") == UnitPolicy(gas_valve="auto", breaker="confirm")
    assert in_force(policy, "commercial") == policy
    action = plan(ARC, breaker("auto"), in_force(policy, "welfare"))
    assert action is not None and action.mode == "confirm"


def test_update_keeps_missing_keys_and_refuses_bad_values() -> None:
    policy = updated(UnitPolicy(gas_valve="auto"), {"breaker": "auto"}, "commercial")
    assert policy == UnitPolicy(gas_valve="auto", breaker="auto", charger_port="off")
    for bad in ({"breaker": "on"}, {"valve": "auto"}, {"gas_valve": None}):
        with pytest.raises(BadPolicy):
            updated(policy, bad, "commercial")


def test_linkage_failed_decisions_are_the_catalogues() -> None:
    raised = failed_decision("g1", "U1", 5, {"cmd": "valve_close"})
    assert (raised.action, raised.key, raised.type) == ("raise", "device:g1", AlarmType.linkage_failed)
    assert (raised.severity, raised.response) == (Severity.major, Response.verify)
    cleared = recovered_decision("g1", "U1", 6, "linkage.state")
    assert (cleared.action, cleared.key, cleared.rule) == ("clear", "device:g1", "linkage.state")

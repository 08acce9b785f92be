"""The pure parts of work orders (CONTRACT §11): each condition at its boundary, verification,
the transitions a person may make, due dates and the overdue test in the device time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from alerting.workorders.conditions import DeviceFacts, History, candidates, healthy
from alerting.workorders.model import BadTransition, check_transition, default_due, is_overdue
from devices.fleet import FAULT, FLAPPING, LOW_BATTERY, OFFLINE, ONLINE, TAMPER

NOW = datetime(2026, 5, 20, 8, 0, tzinfo=UTC)
TZ = ZoneInfo("Asia/Shanghai")
NOTHING = History({}, {}, {})


def kinds(devices: list[DeviceFacts], history: History = NOTHING) -> set[tuple[str, str]]:
    return {(c.device_id, c.kind) for c in candidates(devices, history, NOW)}


def test_time_conditions_hold_from_their_boundary() -> None:
    d = DeviceFacts("d1", "u1", ONLINE)
    assert kinds([d], History({"d1": NOW - timedelta(hours=24)}, {}, {})) == {("d1", "repair")}
    assert kinds([d], History({"d1": NOW - timedelta(hours=23, minutes=59)}, {}, {})) == set()
    assert kinds([d], History({}, {}, {"d1": (NOW - timedelta(hours=24), "1:2")})) == {("d1", "shielded")}
    assert kinds([d], History({}, {}, {"d1": (NOW - timedelta(hours=23), "1:2")})) == set()
    offline = DeviceFacts("d2", "u1", OFFLINE, offline_since=NOW - timedelta(hours=72))
    assert kinds([offline]) == set()  # more than 72 h
    later = DeviceFacts("d2", "u1", OFFLINE, offline_since=NOW - timedelta(hours=72, seconds=1))
    assert kinds([later]) == {("d2", "reconnect")}
    back = DeviceFacts("d2", "u1", ONLINE, offline_since=NOW - timedelta(days=9))
    assert kinds([back]) == set()  # online again: the old offline time does not count


def test_flag_conditions_and_false_alarms() -> None:
    d = DeviceFacts("d1", "u1", ONLINE | LOW_BATTERY | TAMPER)
    assert kinds([d]) == {("d1", "battery"), ("d1", "tamper")}
    flapping = DeviceFacts("d2", "u1", ONLINE | FLAPPING)
    found = candidates([flapping], History({}, {"d2": 5}, {}), NOW)
    assert [(c.kind, c.reason) for c in found] == [("false_alarms", "探测器频繁报警复位 / flapping detector")]
    assert kinds([DeviceFacts("d3", "u1", ONLINE)], History({}, {"d3": 3}, {})) == {("d3", "false_alarms")}
    assert kinds([DeviceFacts("d3", "u1", ONLINE)], History({}, {"d3": 2}, {})) == set()


def test_healthy_needs_a_report_after_the_fix_online_and_the_condition_gone() -> None:
    fixed = NOW - timedelta(hours=1)
    well = DeviceFacts("d1", "u1", ONLINE, last_seen=NOW)
    assert all(healthy(k, well, False, fixed) for k in ("repair", "reconnect", "battery", "tamper", "false_alarms",
                                                         "shielded", "hidden_danger"))
    assert not healthy("battery", DeviceFacts("d1", "u1", ONLINE, last_seen=fixed - timedelta(seconds=1)), False, fixed)
    assert not healthy("reconnect", DeviceFacts("d1", "u1", OFFLINE, last_seen=NOW), False, fixed)
    assert not healthy("repair", DeviceFacts("d1", "u1", ONLINE | FAULT, last_seen=NOW), False, fixed)
    assert not healthy("shielded", well, True, fixed)
    assert not healthy("hidden_danger", DeviceFacts("d1", "u1", ONLINE | TAMPER, last_seen=NOW), False, fixed)
    assert healthy("battery", DeviceFacts("d1", "u1", ONLINE | TAMPER, last_seen=NOW), False, fixed)
    assert not healthy("battery", None, False, fixed)


def test_transitions_a_person_may_make() -> None:
    check_transition("open", "assigned", has_devices=True)
    check_transition("assigned", "fixed", has_devices=True)
    check_transition("fixed", "cancelled", has_devices=True)
    check_transition("fixed", "verified", has_devices=False)
    for current, target, devices in (("fixed", "verified", True), ("verified", "open", True),
                                     ("cancelled", "assigned", False), ("open", "verified", False)):
        with pytest.raises(BadTransition):
            check_transition(current, target, has_devices=devices)


def test_due_and_overdue_in_the_device_time_zone() -> None:
    assert default_due(datetime(2026, 1, 31, 16, 30, tzinfo=UTC), TZ) == date(2026, 3, 31)  # 1 Feb in Shanghai
    assert default_due(datetime(2026, 1, 31, 15, 30, tzinfo=UTC), TZ) == date(2026, 2, 28)
    due = date(2026, 5, 20)
    assert not is_overdue(due, "open", datetime(2026, 5, 20, 15, 59, tzinfo=UTC), TZ)
    assert is_overdue(due, "open", datetime(2026, 5, 20, 16, 0, tzinfo=UTC), TZ)
    assert not is_overdue(due, "verified", datetime(2026, 6, 1, tzinfo=UTC), TZ)

"""The pure incident transitions of the lifecycle (CONTRACT §8 Incidents): a child neither upgrades
nor climbs; what a parent's ack or resolve does to each child; which detectors a resolved parent
holds; the alarm object's links."""

from __future__ import annotations

from dataclasses import replace

import pytest

from alerting.lifecycle import (
    Alarm,
    Change,
    ack_change,
    escalate,
    fold,
    for_child,
    held_devices,
    is_incident,
    new_alarm,
    resolve_change,
    upgrade_unacked,
)
from alerting.model import AlarmType, Decision, Response, Severity

T0 = 1_795_341_600_000


def smoke(device: str, ts: int = T0, response: Response = Response.verify) -> Decision:
    return Decision("raise", f"device:{device}", AlarmType.smoke, Severity.major, response, "smoke_alarm", ts,
                    [device], "U1", [{"device_id": device, "ts_ms": ts}])


def child(device: str, status: str = "active_unack", parent: int | None = 100) -> Alarm:
    return replace(new_alarm(smoke(device), int(device[1:]), "U1", "r", T0), status=status, parent_id=parent)


def test_a_child_neither_upgrades_nor_climbs_a_lone_alarm_does() -> None:
    for parent, upgraded in ((None, True), (100, False)):
        a = child("D1", parent=parent)
        stronger = fold(a, smoke("D1", T0 + 1000, Response.immediate), T0 + 1000)
        assert stronger is not None
        assert (stronger.alarm.response == "immediate") is upgraded
        assert (stronger.notify_level is not None) is upgraded
        assert (upgrade_unacked(a, T0 + 61_000, 60_000, flapping=False) is not None) is upgraded
        assert (escalate(a, T0 + 301_000, {"verify": 300_000}) is not None) is upgraded


def test_a_parents_ack_and_resolve_reach_its_open_children_only() -> None:
    parent = replace(new_alarm(Decision("raise", "unit:U1", AlarmType.fire, Severity.critical, Response.immediate,
                                        "multi_detector", T0, ["D1", "D2"], "U1"), 100, "U1", "r", T0),
                     children=[1, 2, 3, 4])
    acked = ack_change(parent, "甲", T0 + 5)
    states = {"active_unack": "active_ack", "cleared_unack": "cleared_ack", "active_ack": None, "cleared_ack": None,
              "resolved": None}
    for i, (status, after) in enumerate(states.items(), start=1):
        c = for_child(acked, child(f"D{i}", status), T0 + 5)
        assert (c and c.alarm.status) == after
        if c is not None:
            assert (c.actor, c.alarm.acked_by, c.detail["parent_id"]) == ("甲", "甲", "100")
    resolved = resolve_change(parent, "fire", "已扑灭", "乙", T0 + 9)
    for status in ("active_unack", "active_ack", "cleared_unack"):
        c = for_child(resolved, child("D1", status), T0 + 9)
        assert c is not None
        assert (c.alarm.status, c.alarm.classification, c.alarm.note, c.alarm.resolved_by) == (
            "resolved", "fire", "已扑灭", "乙")
    for status in ("cleared_ack", "resolved"):
        assert for_child(resolved, child("D1", status), T0 + 9) is None
    assert for_child(Change(parent, "escalated"), child("D1"), T0) is None


def test_held_devices_are_the_children_still_in_alarm() -> None:
    kids = [child("D3", "active_ack"), child("D1"), child("D2", "cleared_ack"), child("D4", "cleared_unack")]
    assert held_devices(kids) == ["D1", "D3"]


@pytest.mark.parametrize(("key", "type_", "expected"), [
    ("unit:U1", AlarmType.fire, True), ("device:D1", AlarmType.fire, False), ("unit:U1", AlarmType.smoke, False)])
def test_only_a_units_fire_is_a_parent(key: str, type_: AlarmType, expected: bool) -> None:
    assert is_incident(Decision("raise", key, type_, Severity.critical, Response.immediate, "r", T0)) is expected


def test_the_alarm_object_carries_the_links_as_strings() -> None:
    shown = child("D7", parent=42).to_json()
    assert (shown["parent_id"], shown["children"]) == ("42", [])
    parent = replace(child("D9", parent=None), children=[7, 8])
    assert (parent.to_json()["parent_id"], parent.to_json()["children"]) == (None, ["7", "8"])

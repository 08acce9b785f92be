"""Offline devices and NB cell outages, with the fleet's own sweep finding the silent devices."""

from __future__ import annotations

import numpy as np
import pytest

from alerting.core import Correlator
from alerting.model import AlarmType, Decision, Response, Severity
from devices.fleet import Fleet
from devices.kinds import Kind
from tests.unit.reference_rules import T0, columns, reading

HB_S = 60  # offline after 150 s of silence


def cell_fleet(n: int, kind: Kind = Kind.smoke) -> Fleet:
    fleet = Fleet(capacity=8)
    for i in range(n):
        fleet.upsert(f"d{i}", kind, unit_id="u1", cell_id="1A2B3C", heartbeat_s=HB_S)
    return fleet


def heard(fleet: Fleet, ids: list[str], ts: int) -> np.ndarray:
    beats = [reading(d, Kind(int(fleet.kind[fleet.slot(d)])), "heartbeat", ts) for d in ids]
    return fleet.apply(columns(fleet, beats)).came_online


def summary(decisions: list[Decision]) -> list[tuple]:
    return sorted((d.action, d.key, d.type.name, d.severity.name, d.response.name, d.rule) for d in decisions)


def test_a_silent_device_gets_an_offline_alarm() -> None:
    fleet = cell_fleet(1)
    heard(fleet, ["d0"], T0)
    got = Correlator().sweep(fleet.sweep(T0 + 151_000), fleet, T0 + 151_000)
    assert summary(got) == [("raise", "device:d0", "offline", "minor", "none", "device.offline")]
    assert got[0].ts_ms == T0 + 150_000 and got[0].evidence[0]["last_seen_ms"] == T0


def test_a_silent_transmission_device_needs_a_response() -> None:
    fleet = cell_fleet(1, Kind.uitd)
    heard(fleet, ["d0"], T0)
    (d,) = Correlator().sweep(fleet.sweep(T0 + 151_000), fleet, T0 + 151_000)
    assert (d.severity, d.response) == (Severity.major, Response.verify)


@pytest.mark.parametrize(("devices", "outage"), [(19, False), (20, True)])
def test_twenty_devices_of_a_cell_fold_into_one_outage(devices: int, outage: bool) -> None:
    fleet = cell_fleet(devices)
    for i in range(devices):  # silent one after another over 9.5 minutes
        heard(fleet, [f"d{i}"], T0 + i * 30_000)
    now = T0 + 1_000_000
    got = Correlator().sweep(fleet.sweep(now), fleet, now)
    if outage:
        (d,) = got
        assert (d.key, d.type, d.severity, d.response, d.rule) == (
            "cell:1A2B3C", AlarmType.network_outage, Severity.major, Response.verify, "network_outage")
        assert sorted(d.device_ids) == sorted(f"d{i}" for i in range(20))
        assert d.evidence[0] == {"cell_id": "1A2B3C", "devices": 20, "window_s": 600.0, "detected_ms": now}
    else:
        assert [d.type for d in got] == [AlarmType.offline] * devices


def test_devices_silent_more_than_ten_minutes_apart_stay_individual() -> None:
    fleet = cell_fleet(20)
    for i in range(20):
        heard(fleet, [f"d{i}"], T0 + i * 40_000)  # 12.7 minutes from first to last
    now = T0 + 2_000_000
    got = Correlator().sweep(fleet.sweep(now), fleet, now)
    assert {d.type for d in got} == {AlarmType.offline}


def test_an_outage_takes_over_earlier_offline_alarms_and_ends_when_all_are_back() -> None:
    fleet = cell_fleet(25)
    core = Correlator()
    heard(fleet, [f"d{i}" for i in range(25)], T0)
    heard(fleet, [f"d{i}" for i in range(5, 25)], T0 + 60_000)
    first = core.sweep(fleet.sweep(T0 + 151_000), fleet, T0 + 151_000)  # d0-d4 silent
    assert summary(first) == [("raise", f"device:d{i}", "offline", "minor", "none", "device.offline") for i in range(5)]
    later = core.sweep(fleet.sweep(T0 + 211_000), fleet, T0 + 211_000)  # d5-d24 too: 25 within 10 minutes
    assert summary(later) == sorted(
        [("clear", f"device:d{i}", "offline", "minor", "none", "network_outage") for i in range(5)]
        + [("raise", "cell:1A2B3C", "network_outage", "major", "verify", "network_outage")])
    (outage,) = [d for d in later if d.action == "raise"]
    assert len(outage.device_ids) == 25

    back = core.came_online(heard(fleet, [f"d{i}" for i in range(24)], T0 + 300_000), fleet, T0 + 300_000)
    assert back == []  # d24 still silent
    back = core.came_online(heard(fleet, ["d24"], T0 + 310_000), fleet, T0 + 310_000)
    assert [(d.action, d.key, d.type.name, d.rule, d.ts_ms) for d in back] == [
        ("clear", "cell:1A2B3C", "network_outage", "online", T0 + 310_000)]


def test_a_device_heard_again_clears_its_offline_alarm() -> None:
    fleet = cell_fleet(1)
    core = Correlator()
    heard(fleet, ["d0"], T0)
    core.sweep(fleet.sweep(T0 + 151_000), fleet, T0 + 151_000)
    back = core.came_online(heard(fleet, ["d0"], T0 + 200_000), fleet, T0 + 200_000)
    assert [(d.action, d.key, d.type.name, d.rule, d.ts_ms) for d in back] == [
        ("clear", "device:d0", "offline", "online", T0 + 200_000)
    ]

"""Fleet state: offline sweeps on an injected clock, late reports, growth, bulk loading,
checkpoints, operator helpers and the snapshot the API shows."""

from __future__ import annotations

import json
import math
from datetime import UTC

import numpy as np
import pytest

from devices import checkpoint, fleet_query
from devices.batch import NUMERIC_COLUMNS, ReadingColumns
from devices.fleet import ALARM, FLAPPING, LOW_BATTERY, MAINTENANCE, NEVER, OFFLINE, ONLINE, QUARANTINED, Fleet
from devices.kinds import Event, Kind

T0 = 1_795_341_600_000
MINUTE = 60_000


def batch(slots: list[int], events: list[Event], ts: list[int], received: list[int] | None = None,
          **values: list[float]) -> ReadingColumns:
    n = len(slots)
    cols = {name: np.full(n, np.nan) for name in NUMERIC_COLUMNS}
    cols.update({name: np.array(v, np.float64) for name, v in values.items()})
    return ReadingColumns(
        slot=np.array(slots, np.int32),
        kind=np.ones(n, np.int8),
        event=np.array([int(e) for e in events], np.int8),
        ts_ms=np.array(ts, np.int64),
        received_ms=np.array(received if received is not None else ts, np.int64),
        values=cols,
    )


def heard(fleet: Fleet, slot: int, at: int, event: Event = Event.heartbeat) -> list[int]:
    """One reading received at `at`; answers came_online."""
    return fleet.apply(batch([slot], [event], [at])).came_online.tolist()


def test_offline_at_the_first_sweep_after_two_and_a_half_heartbeats_exactly_once() -> None:
    fleet = Fleet()
    s = fleet.upsert("868120301234567", Kind.electrical, heartbeat_s=60)
    heard(fleet, s, T0)
    deadline = T0 + 150_000
    went: list[int] = []
    for now in range(T0, T0 + 10 * MINUTE, 7_000):  # a sweep every 7 s
        if fleet.sweep(now).tolist() == [s]:
            went.append(now)
    assert len(went) == 1
    assert went[0] > deadline and went[0] - 7_000 <= deadline  # not before, and not a sweep late
    assert fleet.sweep(deadline).size == 0 and fleet.offline_since_ms[s] == deadline
    assert fleet.flags[s] & OFFLINE and not fleet.flags[s] & ONLINE
    assert fleet_query.status_of(fleet, [s]) == ["offline"]

    assert heard(fleet, s, T0 + 11 * MINUTE) == [s]  # back, reported once
    assert heard(fleet, s, T0 + 11 * MINUTE + 1) == []
    assert fleet_query.status_of(fleet, [s]) == ["online"] and fleet.offline_since_ms[s] == 0
    assert fleet.sweep(T0 + 11 * MINUTE + 150_000).size == 0
    assert fleet.sweep(T0 + 11 * MINUTE + 150_002).tolist() == [s]


def test_sweep_boundary_is_strict() -> None:
    fleet = Fleet()
    s = fleet.upsert("d", Kind.uitd)  # 90 s heartbeat
    heard(fleet, s, T0)
    assert fleet.sweep(T0 + 225_000).size == 0
    assert fleet.sweep(T0 + 225_001).tolist() == [s]


def test_never_seen_devices_stay_unknown() -> None:
    fleet = Fleet()
    s = fleet.upsert("d", Kind.uitd)
    assert fleet.sweep(T0 + 365 * 24 * 60 * MINUTE).size == 0
    assert fleet_query.status_of(fleet, [s]) == ["unknown"]


def test_late_reports_never_overwrite_newer_state() -> None:
    fleet = Fleet()
    s = fleet.upsert("d", Kind.smoke)
    fleet.apply(batch([s], [Event.alarm], [T0], temperature_c=[30.0]))
    applied = fleet.apply(batch([s], [Event.alarm_clear], [T0 - 1000], [T0 + 5000], temperature_c=[99.0]))
    assert applied.late_rows == 1
    assert fleet.flags[s] & ALARM
    assert float(fleet.values["temperature_c"][s]) == 30.0
    assert fleet.last_seen_ms[s] == T0 + 5000 and fleet.last_ts_ms[s] == T0
    # within one batch: device-time order decides, whatever the arrival order
    fleet.apply(batch([s, s], [Event.alarm, Event.alarm_clear], [T0 + 3000, T0 + 2000], temperature_c=[40.0, 35.0]))
    assert fleet.flags[s] & ALARM and float(fleet.values["temperature_c"][s]) == 40.0


def test_battery_threshold_per_device() -> None:
    fleet = Fleet()
    a, b = fleet.upsert("a", Kind.smoke), fleet.upsert("b", Kind.smoke)
    fleet.set_thresholds(b, {"battery_pct_min": 30})
    fleet.apply(batch([a, b], [Event.report] * 2, [T0, T0], battery_pct=[25.0, 25.0]))
    assert not fleet.flags[a] & LOW_BATTERY and fleet.flags[b] & LOW_BATTERY
    fleet.apply(batch([a, b], [Event.low_battery, Event.report], [T0 + 1, T0 + 1], battery_pct=[80.0, 30.0]))
    assert fleet.flags[a] & LOW_BATTERY and not fleet.flags[b] & LOW_BATTERY
    with pytest.raises(ValueError, match="battery_min"):
        fleet.set_thresholds(a, {"battery_min": 5})


def test_uitd_component_follows_its_transmission_device() -> None:
    fleet = Fleet()
    uitd = fleet.upsert("uitd-123", Kind.uitd)
    comp = fleet.upsert("uitd-123:1:1:7", Kind.uitd, parent_id="uitd-123")
    assert heard(fleet, comp, T0, Event.alarm) == []
    assert fleet.last_seen_ms[uitd] == T0 and fleet.offline_at_ms[comp] == NEVER
    assert fleet.sweep(T0 + 10 * MINUTE).tolist() == [uitd]  # the component is not swept on its own
    assert fleet_query.status_of(fleet, [uitd, comp]) == ["offline", "alarm"]
    assert fleet_query.query(fleet, status="offline").tolist() == [uitd] and fleet_query.counts(fleet)["offline"] == 2
    assert heard(fleet, comp, T0 + 11 * MINUTE, Event.alarm_clear) == [uitd]
    assert fleet_query.status_of(fleet, [uitd, comp]) == ["online", "online"]


def test_rows_without_a_slot_are_ignored_and_unknown_slots_refused() -> None:
    fleet = Fleet()
    s = fleet.upsert("d", Kind.gas)
    assert fleet.apply(batch([-1, -1], [Event.alarm] * 2, [T0, T0])).slots.size == 0
    assert fleet.flags[s] == 0
    with pytest.raises(ValueError, match="not a device"):
        fleet.apply(batch([1], [Event.alarm], [T0]))


def test_overrides_count_the_devices_holding_each_threshold() -> None:
    fleet = Fleet(capacity=2)
    a, b = fleet.upsert("a", Kind.gas), fleet.upsert("b", Kind.gas)
    fleet.set_thresholds(a, {"gas_lel_pct": 7.5, "gas_lel_critical_pct": 20})
    fleet.set_thresholds(b, {"gas_lel_pct": 8, "smoke_temp_c": math.nan})  # NaN is the default: no override
    fleet.set_thresholds(a, {"gas_lel_pct": 6})  # a replacement: a's critical override is gone
    fleet.upsert("c", Kind.gas)  # growth keeps the thresholds, still read-only
    assert fleet.overrides["gas_lel_pct"] == 2 and fleet.overrides["gas_lel_critical_pct"] == 0
    assert fleet.overrides["smoke_temp_c"] == 0
    fleet.set_thresholds(b, {})
    assert fleet.overrides["gas_lel_pct"] == 1 and float(fleet.thresholds["gas_lel_pct"][a]) == 6
    with pytest.raises(ValueError):
        fleet.thresholds["gas_lel_pct"][b] = 1.0  # only set_thresholds keeps the counts true


def test_growth_past_capacity_keeps_state() -> None:
    fleet = Fleet(capacity=2)
    first = fleet.upsert("d0", Kind.gas, unit_id="u", cell_id="c")
    fleet.set_thresholds(first, {"gas_lel_pct": 7.5})
    fleet.apply(batch([first], [Event.alarm], [T0], gas_lel_pct=[12.0]))
    fleet.sweep(T0 + 3 * 86_400_000)
    slots = [fleet.upsert(f"d{i}", Kind.smoke, unit_id="u") for i in range(1, 100)]
    assert fleet.capacity >= 100 and slots == list(range(1, 100))
    assert fleet.flags[first] == ALARM | OFFLINE
    assert float(fleet.values["gas_lel_pct"][first]) == 12.0 and fleet.value_ts_ms["gas_lel_pct"][first] == T0
    assert float(fleet.thresholds["gas_lel_pct"][first]) == 7.5
    assert fleet.offline_since_ms[first] == T0 + 2.5 * 86_400_000
    assert fleet.unit_slots("u").tolist() == list(range(100))
    assert heard(fleet, first, T0 + 4 * 86_400_000) == [first]


def test_bulk_load_matches_upsert() -> None:
    rows = [
        ("t:1:1:1", Kind.uitd, "u1", None, None, "t", False, False),  # before its parent
        ("t", Kind.uitd, "u1", "c9", 30, None, False, True),
        ("s", Kind.smoke, None, "c9", None, None, True, False),
        ("s", Kind.smoke, "u2", "c8", 600, None, False, False),  # repeated: the last row wins
    ]
    by_upsert = Fleet()
    for row in [rows[1], rows[0], rows[3]]:
        device_id, kind, unit, cell, hb, parent, maint, quar = row
        by_upsert.upsert(device_id, kind, unit_id=unit, cell_id=cell, heartbeat_s=hb, parent_id=parent,
                         maintenance=maint, quarantined=quar)
    bulk = Fleet(capacity=1)
    cols = list(zip(*rows))
    slots = bulk.bulk_load(cols[0], [k.name for k in cols[1]], unit_ids=cols[2], cell_ids=cols[3],
                           heartbeat_s=cols[4], parent_ids=cols[5], maintenance=cols[6], quarantined=cols[7])
    assert slots.tolist() == [0, 1, 2, 2]
    for device_id in ("t", "t:1:1:1", "s"):
        a, b = by_upsert.slot(device_id), bulk.slot(device_id)
        for column in ("kind", "heartbeat_ms", "flags", "offline_at_ms"):
            assert getattr(by_upsert, column)[a] == getattr(bulk, column)[b], (device_id, column)
        for column, names in (("unit", "units"), ("cell", "cells")):
            ua, ub = getattr(by_upsert, column)[a], getattr(bulk, column)[b]
            assert (ua < 0 and ub < 0) or getattr(by_upsert, names).names[ua] == getattr(bulk, names).names[ub]
        pa, pb = by_upsert.parent[a], bulk.parent[b]
        assert (pa < 0 and pb < 0) or by_upsert.device_ids[pa] == bulk.device_ids[pb]
    assert bulk.flags[bulk.slot("t")] == QUARANTINED and bulk.heartbeat_ms[bulk.slot("s")] == 600_000
    assert bulk.heartbeat_ms[bulk.slot("t:1:1:1")] == 90_000
    with pytest.raises(ValueError):
        bulk.bulk_load(["x"], ["boiler"])


def test_bulk_load_of_distinct_ids_into_an_empty_fleet_takes_them_in_order() -> None:
    fleet = Fleet(capacity=1)
    slots = fleet.bulk_load(["t:1:1:1", "t", "s"], ["uitd", "uitd", "smoke"], unit_ids=["u1", "u1", None],
                            cell_ids=[None, "c9", "c9"], heartbeat_s=[None, 30, None], parent_ids=["t", None, None],
                            maintenance=[False, False, True], quarantined=[False, True, False])
    assert slots.tolist() == [0, 1, 2] and fleet.device_ids == ["t:1:1:1", "t", "s"]
    assert fleet.index == {"t:1:1:1": 0, "t": 1, "s": 2} and fleet.size == 3
    assert fleet.parent[:3].tolist() == [1, -1, -1] and fleet.unit[:3].tolist() == [0, 0, -1]
    assert fleet.cell[:3].tolist() == [-1, 0, 0] and fleet.heartbeat_ms[:3].tolist() == [90_000, 30_000, 86_400_000]
    assert fleet.flags[:3].tolist() == [0, QUARANTINED, MAINTENANCE]
    assert fleet.bulk_load(["s", "n"], ["smoke", "gas"]).tolist() == [2, 3]  # then the general path
    assert fleet.device_ids == ["t:1:1:1", "t", "s", "n"] and fleet.flags[2] == 0


def varied_fleet() -> tuple[Fleet, int]:
    fleet = Fleet()
    fleet.set_unit("u1", region="江西省/赣州市/章贡区/南外街道")
    a = fleet.upsert("868120301234567", Kind.smoke, unit_id="u1", cell_id="1A2B3C")
    b = fleet.upsert("b", Kind.electrical, unit_id="u1", maintenance=True)
    c = fleet.upsert("c", Kind.water)
    fleet.upsert("never", Kind.gas)
    fleet.apply(batch([a, b, c], [Event.alarm, Event.fault, Event.heartbeat], [T0, T0, T0 - 5],
                      [T0 + 10, T0 + 20, T0 + 30], battery_pct=[12.0, np.nan, 80.0], rsrp_dbm=[-97.0, np.nan, np.nan],
                      smoke_obscuration_pct_m=[4.2, np.nan, np.nan], cable_temp_c=[np.nan, 71.3, np.nan]))
    fleet.sweep(T0 + 20 * MINUTE)  # b (5 min heartbeat) goes offline
    fleet.mute(a, T0 + 30 * MINUTE)
    fleet.mark_flapping(np.array([a]))
    return fleet, a


def test_checkpoint_round_trip() -> None:
    fleet, a = varied_fleet()
    rows = checkpoint.checkpoint_rows(fleet)
    assert len(rows) == fleet.size
    row = rows[a]
    assert row[0] == "868120301234567" and row[1].tzinfo == UTC and row[2] == "alarm"
    assert row[3] == 12.0 and row[4] == -97.0
    assert row[5]["values"]["smoke_obscuration_pct_m"] == {"value": 4.2, "ts_ms": T0}
    as_read = [(*r[:5], json.dumps(r[5]), r[6]) for r in rows]  # asyncpg hands jsonb out as text
    restored = Fleet()
    restored.bulk_load(fleet.device_ids, fleet.kind[: fleet.size])
    assert checkpoint.restore(restored, [*as_read, ("gone", None, "unknown", None, None, "{}", 0)]) == fleet.size
    for column in ("last_seen_ms", "last_ts_ms", "offline_since_ms", "offline_at_ms", "mute_until_ms"):
        assert getattr(restored, column)[: fleet.size].tolist() == getattr(fleet, column)[: fleet.size].tolist(), column
    live = np.uint16(0xFFFF & ~(MAINTENANCE | QUARANTINED))
    assert (restored.flags[: fleet.size] & live).tolist() == (fleet.flags[: fleet.size] & live).tolist()
    assert restored.flags[fleet.slot("b")] & MAINTENANCE == 0  # the registry owns that bit
    for name in NUMERIC_COLUMNS:
        np.testing.assert_array_equal(restored.values[name][: fleet.size], fleet.values[name][: fleet.size])
        assert restored.value_ts_ms[name][: fleet.size].tolist() == fleet.value_ts_ms[name][: fleet.size].tolist()
    assert not restored.dirty[: restored.size].any()


def test_restored_online_device_silent_during_downtime_goes_offline_when_it_became_overdue() -> None:
    fleet = Fleet()
    s = fleet.upsert("d", Kind.electrical)
    heard(fleet, s, T0)
    restarted = Fleet()
    restarted.bulk_load(["d"], [Kind.electrical])
    checkpoint.restore(restarted, checkpoint.checkpoint_rows(fleet))
    assert fleet_query.status_of(restarted, [s]) == ["online"]
    assert restarted.sweep(T0 + 60 * MINUTE).tolist() == [s]
    assert restarted.offline_since_ms[s] == T0 + 750_000


def test_dirty_slots_are_taken_once_and_can_be_given_back() -> None:
    fleet = Fleet()
    a, b, c = (fleet.upsert(x, Kind.smoke) for x in "abc")
    assert fleet.take_dirty().size == 0  # registering alone changes no checkpointed state
    fleet.apply(batch([c, a], [Event.report] * 2, [T0, T0]))
    taken = fleet.take_dirty()
    assert taken.tolist() == [a, c] and fleet.take_dirty().size == 0
    fleet.mark_dirty(taken)
    fleet.set_maintenance(b, True)
    assert fleet.take_dirty().tolist() == [a, b, c]
    assert [r[0] for r in checkpoint.checkpoint_rows(fleet, np.array([b]))] == ["b"]


def test_snapshot_shows_live_state() -> None:
    fleet, a = varied_fleet()
    snap = fleet_query.snapshot(fleet, a)
    assert snap == {
        "device_id": "868120301234567",
        "kind": "smoke",
        "status": "alarm",
        "last_seen_ms": T0 + 10,
        "last_ts_ms": T0,
        "offline_since_ms": None,
        "battery_pct": 12.0,
        "rsrp_dbm": -97.0,
        "values": {name: {"value": v, "ts_ms": T0} for name, v in
                   (("battery_pct", 12.0), ("rsrp_dbm", -97.0), ("smoke_obscuration_pct_m", 4.2))},
        "flags": ["online", "alarm", "low_battery", "flapping"],
        "maintenance": False,
        "muted_until_ms": T0 + 30 * MINUTE,
        "unit_id": "u1",
        "region": "江西省/赣州市/章贡区/南外街道",
        "cell_id": "1A2B3C",
        "parent_id": None,
    }
    b = fleet_query.snapshot(fleet, fleet.slot("b"))
    assert b["status"] == "fault" and b["offline_since_ms"] == T0 + 20 + 750_000 and b["maintenance"]
    assert b["values"]["cable_temp_c"]["value"] == 71.3
    never = fleet_query.snapshot(fleet, fleet.slot("never"))
    assert never["status"] == "unknown" and never["last_seen_ms"] is None and never["values"] == {}
    with pytest.raises(IndexError):
        fleet_query.snapshot(fleet, fleet.size)


def test_status_precedence() -> None:
    fleet = Fleet()
    s = [fleet.upsert(f"d{i}", Kind.smoke) for i in range(5)]
    fleet.flags[s] = [ALARM | FLAPPING | OFFLINE, 8 | OFFLINE, OFFLINE | LOW_BATTERY, ONLINE | MAINTENANCE, 0]
    assert fleet_query.status_of(fleet, s) == ["alarm", "fault", "offline", "online", "unknown"]


def test_maintenance_by_device_or_unit_and_flapping_cleared_by_operator() -> None:
    fleet = Fleet()
    a = fleet.upsert("a", Kind.smoke, unit_id="u1")
    b = fleet.upsert("b", Kind.smoke, unit_id="u2")
    c = fleet.upsert("c", Kind.smoke)
    fleet.set_unit_maintenance("u1", True)
    fleet.set_maintenance(c, True)
    assert fleet.in_maintenance(np.array([a, b, c])).tolist() == [True, False, True]
    fleet.set_unit_maintenance("u1", False)
    assert fleet.in_maintenance(np.array([a, b, c])).tolist() == [False, False, True]
    fleet.mark_flapping(np.array([b]))
    fleet.clear_flapping(b)
    assert fleet.flags[b] & FLAPPING == 0
    assert math.isnan(fleet.thresholds["gas_lel_pct"][b])

"""The fleet snapshot (devices.checkpoint): records -> decode -> restore gives back every live
column; unusable snapshots are refused; metric columns are allocated only once reported."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from devices import checkpoint
from devices.batch import NUMERIC_COLUMNS
from devices.fleet import MAINTENANCE, QUARANTINED, Fleet
from devices.kinds import Event, Kind
from tests.unit.test_fleet import T0, batch

TAKEN = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
LIVE = ("last_seen_ms", "last_ts_ms", "offline_since_ms", "offline_at_ms", "mute_until_ms")
METRICS = sorted(NUMERIC_COLUMNS)


def rows_of(fleet: Fleet) -> list[tuple[object, ...]]:
    """`SNAPSHOT_QUERY`'s rows as PostgreSQL answers them after `snapshot_records`."""
    return [(*r, TAKEN) for r in checkpoint.snapshot_records(fleet)]


def registry_copy(fleet: Fleet, order: list[int] | None = None) -> Fleet:
    """A fresh fleet with the same registry (in `order` of slots), no live state."""
    order = list(range(fleet.size)) if order is None else order
    other = Fleet()
    other.bulk_load([fleet.device_ids[s] for s in order], fleet.kind[order],
                    maintenance=(fleet.flags[order] & MAINTENANCE) != 0)
    return other


def assert_same_live_state(a: Fleet, b: Fleet) -> None:
    for device, s in a.index.items():
        t = b.slot(device)
        for column in LIVE:
            assert int(getattr(b, column)[t]) == int(getattr(a, column)[s]), (device, column)
        live = ~(MAINTENANCE | QUARANTINED)
        assert int(b.flags[t]) & live == int(a.flags[s]) & live, device
        for name in NUMERIC_COLUMNS:
            assert np.array_equal(b.values[name][t], a.values[name][s], equal_nan=True), (device, name)
            assert int(b.value_ts_ms[name][t]) == int(a.value_ts_ms[name][s]), (device, name)


fleets = st.lists(
    st.tuples(st.sampled_from(METRICS), st.floats(-1e6, 1e6, width=32), st.sampled_from([Event.heartbeat, Event.alarm,
                                                                                          Event.fault])),
    min_size=1, max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(fleets, st.randoms(use_true_random=False))
def test_snapshot_round_trip(readings: list[tuple[str, float, Event]], rnd: object) -> None:
    fleet = Fleet(capacity=4)
    for i in range(12):
        fleet.upsert(f"d{i:02}", Kind.smoke if i % 2 else Kind.gas, maintenance=i == 3)
    for j, (name, value, event) in enumerate(readings):
        s = j % fleet.size
        fleet.apply(batch([s], [event], [T0 + j * 1000], **{name: [value]}))
    fleet.sweep(T0 + 86_400_000)  # some go offline, with offline_since
    fleet.mute(2, T0 + 99)
    order = list(range(fleet.size))
    rnd.shuffle(order)  # type: ignore[attr-defined]
    for target in (registry_copy(fleet), registry_copy(fleet, order)):
        snapshot = checkpoint.decode_snapshot(rows_of(fleet))
        assert snapshot is not None and snapshot.taken_at == TAKEN
        assert checkpoint.restore_snapshot(target, snapshot) == fleet.size
        assert_same_live_state(fleet, target)
        assert target.stored_values == fleet.stored_values  # nothing allocated for unreported metrics
        assert not target.dirty[: target.size].any()
    assert int(target.flags[target.slot("d03")]) & MAINTENANCE  # the registry's bit stays


def test_lazy_metric_columns_take_no_memory_until_reported() -> None:
    fleet = Fleet(capacity=1000)
    s = fleet.upsert("d", Kind.gas)
    assert fleet.stored_values == set()
    assert np.isnan(fleet.values["gas_lel_pct"][s]) and fleet.values["gas_lel_pct"].strides == (0,)
    fleet.apply(batch([s], [Event.heartbeat], [T0], gas_lel_pct=[3.0]))
    assert fleet.stored_values == {"gas_lel_pct"} and float(fleet.values["gas_lel_pct"][s]) == 3.0
    for i in range(2000):  # grows: the allocated column keeps its values, the others stay views
        fleet.upsert(f"x{i}", Kind.smoke)
    assert float(fleet.values["gas_lel_pct"][s]) == 3.0 and fleet.values["gas_lel_pct"].shape == (fleet.capacity,)
    assert fleet.values["co_ppm"].strides == (0,) and fleet.values["co_ppm"].shape == (fleet.capacity,)


def test_unusable_snapshots_are_refused() -> None:
    fleet = Fleet()
    fleet.upsert("a", Kind.smoke)
    fleet.apply(batch([0], [Event.alarm], [T0], battery_pct=[50.0]))
    rows = rows_of(fleet)
    assert checkpoint.decode_snapshot([]) is None
    assert checkpoint.decode_snapshot([(r[0], 99, *r[2:]) for r in rows]) is None  # another format
    assert checkpoint.decode_snapshot([r for r in rows if r[0] != "flags"]) is None  # a column missing
    short = [(*r[:3], r[3][:-1] if r[0] == "values.battery_pct" else r[3], r[4]) for r in rows]
    assert checkpoint.decode_snapshot(short) is None  # not one value per device
    empty = checkpoint.decode_snapshot(rows_of(Fleet()))
    assert empty is not None and empty.device_ids == []

"""Fleet state against a plain dict-based reference: random batches (late reports included),
sweeps on an advancing clock, queries and counts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from devices import fleet_query
from devices.batch import NUMERIC_COLUMNS, ReadingColumns
from devices.fleet import (
    DEFAULT_BATTERY_PCT_MIN,
    EVENT_CLEARS,
    EVENT_SETS,
    FLAG_NAMES,
    LOW_BATTERY,
    OFFLINE,
    ONLINE,
    Fleet,
)
from devices.fleet_query import STATUS_NAMES
from devices.kinds import Event, Kind

# The fleet under test: (device_id, kind, unit, heartbeat_s, parent, battery_pct_min)
DEVICES = [
    ("s0", Kind.smoke, "u0", 1, None, None),
    ("s1", Kind.smoke, "u1", 2, None, 35.0),
    ("g2", Kind.gas, "u2", 3, None, None),
    ("e3", Kind.electrical, None, 1, None, None),
    ("t4", Kind.uitd, "u0", 2, None, None),
    ("t4:1:1:7", Kind.uitd, "u0", 2, "t4", None),
    ("w6", Kind.water, "u3", 4, None, 10.0),
]
UNITS = {"u0": "江西省/赣州市/章贡区", "u1": "江西省/赣州市", "u2": "江西省/赣州市郊", "u3": None}
REGION_PREFIXES = ["江西省", "江西省/赣州市", "江西省/赣州市/", "江西省/赣州市/章贡区", "江西省/赣州", "广东省"]
VALUE_NAMES = ["battery_pct", "temperature_c", "rsrp_dbm"]
T0 = 1_795_341_600_000


@dataclass
class Device:
    kind: Kind
    unit: str | None
    heartbeat_ms: int
    parent: int
    battery_min: float
    last_seen: int = 0
    last_ts: int = 0
    offline_since: int = 0
    flags: int = 0
    values: dict[str, tuple[float, int]] = field(default_factory=dict)


@dataclass
class Row:
    slot: int
    event: Event
    ts: int
    received: int
    values: dict[str, float]


class Reference:
    """The documented semantics, one device and one row at a time."""

    def __init__(self) -> None:
        ids = [d[0] for d in DEVICES]
        self.devices = [
            Device(kind, unit, hb * 1000, ids.index(parent) if parent else -1,
                   float(np.float32(bmin)) if bmin is not None else DEFAULT_BATTERY_PCT_MIN)
            for _, kind, unit, hb, parent, bmin in DEVICES
        ]

    def apply(self, rows: list[Row]) -> set[int]:
        by_slot: dict[int, list[Row]] = {}
        for r in rows:
            if r.slot >= 0:
                by_slot.setdefault(r.slot, []).append(r)
        heard: dict[int, int] = {}
        for slot, rs in by_slot.items():
            d = self.devices[slot]
            prior = d.last_ts
            d.last_ts = max(d.last_ts, max(r.ts for r in rs))
            for name in VALUE_NAMES:
                got = [(r.ts, i, r.values[name]) for i, r in enumerate(rs) if not math.isnan(r.values[name])]
                if got:
                    ts, _, v = max(got)
                    if name not in d.values or ts > d.values[name][1]:
                        d.values[name] = (float(np.float32(v)), ts)
            for r in sorted(rs, key=lambda r: r.ts):
                if r.ts < prior:
                    continue
                if r.event in EVENT_SETS:
                    d.flags |= EVENT_SETS[r.event]
                if r.event in EVENT_CLEARS:
                    d.flags &= ~EVENT_CLEARS[r.event]
                battery = r.values["battery_pct"]
                if not math.isnan(battery) and r.event != Event.low_battery:
                    d.flags = d.flags | LOW_BATTERY if battery < d.battery_min else d.flags & ~LOW_BATTERY
            for s in (slot, d.parent):
                if s >= 0:
                    heard[s] = max(heard.get(s, 0), max(r.received for r in rs))
        came_online = set()
        for s, received in heard.items():
            d = self.devices[s]
            d.last_seen = max(d.last_seen, received)
            if d.flags & OFFLINE:
                came_online.add(s)
            d.flags = (d.flags & ~OFFLINE) | ONLINE
            d.offline_since = 0
        return came_online

    def sweep(self, now: int) -> set[int]:
        gone = set()
        for s, d in enumerate(self.devices):
            if d.last_seen and not d.flags & OFFLINE and d.parent < 0 and now - d.last_seen > 2.5 * d.heartbeat_ms:
                gone.add(s)
                d.flags = (d.flags & ~ONLINE) | OFFLINE
                d.offline_since = d.last_seen + int(2.5 * d.heartbeat_ms)
        return gone

    def status(self, s: int) -> str:
        d = self.devices[s]
        flags = d.flags
        if d.parent >= 0:
            flags = (flags & ~(ONLINE | OFFLINE)) | (self.devices[d.parent].flags & (ONLINE | OFFLINE))
        for bit, name in ((1 << 2, "alarm"), (1 << 3, "fault"), (OFFLINE, "offline"), (ONLINE, "online")):
            if flags & bit:
                return name
        return "unknown"

    def reachable_flags(self, s: int) -> int:
        d = self.devices[s]
        return self.devices[d.parent].flags if d.parent >= 0 else d.flags

    def region(self, s: int) -> str | None:
        unit = self.devices[s].unit
        return UNITS[unit] if unit else None


def make_fleet() -> Fleet:
    fleet = Fleet(capacity=2)
    for unit, region in UNITS.items():
        fleet.set_unit(unit, region=region)
    for device_id, kind, unit, hb, parent, bmin in DEVICES:
        s = fleet.upsert(device_id, kind, unit_id=unit, heartbeat_s=hb, parent_id=parent, cell_id="c1")
        if bmin is not None:
            fleet.set_thresholds(s, {"battery_pct_min": bmin})
    return fleet


def columns(rows: list[Row], fleet: Fleet) -> ReadingColumns:
    n = len(rows)
    values = {name: np.full(n, np.nan) for name in NUMERIC_COLUMNS}
    for name in VALUE_NAMES:
        values[name] = np.array([r.values[name] for r in rows], np.float64)
    slots = np.array([r.slot for r in rows], np.int32)
    return ReadingColumns(
        slot=slots,
        kind=np.where(slots >= 0, fleet.kind[np.maximum(slots, 0)], 0).astype(np.int8),
        event=np.array([int(r.event) for r in rows], np.int8),
        ts_ms=np.array([r.ts for r in rows], np.int64),
        received_ms=np.array([r.received for r in rows], np.int64),
        values=values,
    )


def nan_or(special: list[float], lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.one_of(st.just(math.nan), st.sampled_from(special), st.floats(lo, hi, width=32))


# Times on a 500 ms grid so that equal device times and sweeps exactly at a deadline are common.
ticks = st.integers(0, 12).map(lambda k: k * 500)
row_parts = st.tuples(
    st.integers(-1, len(DEVICES) - 1),
    st.sampled_from(list(Event)),
    st.integers(-8, 3).map(lambda k: k * 500),  # device time around now: negative = an old report
    st.sampled_from([0, 0, 0, 250]),  # receive time after now
    nan_or([10.0, 19.5, 20.0, 35.0], 0, 100),  # battery_pct, on and around the thresholds
    nan_or([21.5], -40, 90),
    nan_or([-97.0], -130, -40),
)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("apply"), ticks, st.lists(row_parts, max_size=14)),
        st.tuples(st.just("sweep"), ticks, st.just([])),
    ),
    max_size=25,
)


def run(ops_: list, fleet: Fleet, ref: Reference) -> int:
    """Drive both models through the same operations, comparing after each; answers the clock."""
    now = T0
    for op, dt, parts in ops_:
        now += dt
        if op == "apply":
            rows = [Row(s, e, now + dts, now + dr, dict(zip(VALUE_NAMES, vs))) for s, e, dts, dr, *vs in parts]
            applied = fleet.apply(columns(rows, fleet))
            expected = ref.apply(rows)
            assert set(applied.came_online.tolist()) == expected
            assert applied.came_online.size == len(expected)
            assert applied.flags_after.tolist() == fleet.flags[applied.slots].tolist()
        else:
            gone = fleet.sweep(now)
            assert set(gone.tolist()) == ref.sweep(now)
            assert gone.size == len(set(gone.tolist()))
        assert_same_state(fleet, ref)
    return now


def assert_same_state(fleet: Fleet, ref: Reference) -> None:
    for s, d in enumerate(ref.devices):
        assert int(fleet.last_seen_ms[s]) == d.last_seen, s
        assert int(fleet.last_ts_ms[s]) == d.last_ts, s
        assert int(fleet.offline_since_ms[s]) == d.offline_since, s
        assert int(fleet.flags[s]) == d.flags, (
            s,
            [FLAG_NAMES[b] for b in FLAG_NAMES if (int(fleet.flags[s]) ^ d.flags) & b],
        )
        for name in NUMERIC_COLUMNS:
            got = float(fleet.values[name][s])
            if name in d.values:
                assert (got, int(fleet.value_ts_ms[name][s])) == d.values[name], (s, name)
            else:
                assert math.isnan(got), (s, name)
    assert fleet_query.status_of(fleet, range(len(ref.devices))) == [ref.status(s) for s in range(len(ref.devices))]


@settings(max_examples=200, deadline=None)
@given(ops)
def test_apply_and_sweep_match_the_reference(ops_: list) -> None:
    run(ops_, make_fleet(), Reference())


queries = st.fixed_dictionaries({
    "kind": st.one_of(st.none(), st.sampled_from(list(Kind))),
    "status": st.one_of(st.none(), st.sampled_from(STATUS_NAMES)),
    "unit_ids": st.one_of(st.none(), st.lists(st.sampled_from(["u0", "u1", "u2", "u3", "nope"]), max_size=3)),
    "region_prefix": st.one_of(st.none(), st.sampled_from(REGION_PREFIXES)),
    "scope": st.one_of(st.none(), st.lists(st.sampled_from(REGION_PREFIXES), max_size=2)),
})


def ref_matches(ref: Reference, s: int, q: dict) -> bool:
    d = ref.devices[s]
    region = ref.region(s)

    def under(prefix: str) -> bool:
        p = prefix.strip("/")
        return region is not None and (region == p or region.startswith(p + "/"))

    return ((q["kind"] is None or d.kind == q["kind"])
            and (q["status"] is None or ref.status(s) == q["status"])
            and (q["unit_ids"] is None or d.unit in q["unit_ids"])
            and (q["region_prefix"] is None or under(q["region_prefix"]))
            and (q["scope"] is None or any(under(p) for p in q["scope"])))


@settings(max_examples=200, deadline=None)
@given(ops, queries, st.integers(1, 4), st.integers(1, 3))
def test_query_and_counts_match_the_reference(ops_: list, q: dict, limit: int, depth: int) -> None:
    fleet, ref = make_fleet(), Reference()
    run(ops_, fleet, ref)
    expected = [s for s in range(len(ref.devices)) if ref_matches(ref, s, q)]

    pages: list[int] = []
    cursor = -1
    while True:  # follow the cursor to the end: every match exactly once, in slot order
        page = fleet_query.query(fleet, **q, after_slot=cursor, limit=limit).tolist()
        assert len(page) <= limit
        if not page:
            break
        pages += page
        cursor = page[-1]
    assert pages == expected

    got = fleet_query.counts(fleet, **q, region_depth=depth)
    assert got["total"] == len(expected)
    assert got["by_status"] == {name: sum(ref.status(s) == name for s in expected) for name in STATUS_NAMES}
    assert got["by_kind"] == {k.name: sum(ref.devices[s].kind == k for s in expected) for k in Kind}
    regions = ["/".join(r.split("/")[:depth]) for s in expected if (r := ref.region(s))]
    assert got["by_region"] == {r: regions.count(r) for r in set(regions)}
    assert got["no_region"] == len(expected) - len(regions)
    assert got["offline"] == sum(bool(ref.reachable_flags(s) & OFFLINE) for s in expected)

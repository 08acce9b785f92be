"""Live state of every device in numpy columns, one slot per device (or uitd panel component).

A province has a million detectors; their state lives here so that applying a batch, an
offline sweep or a per-unit count is one vectorized pass. Slots are dense (0..size-1) and
never reused; arrays grow by doubling so that adding devices costs amortised O(1).
Units, regions and NB cells are interned to small integer ids the same way.

State transitions (`Fleet.apply`, `Fleet.sweep`) live here. Reading the state for the API
(`devices.fleet_query`) and converting it to and from `device_state` rows (`devices.checkpoint`)
are functions of a Fleet in modules built on this one, which knows neither.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np

from devices.batch import NUMERIC_COLUMNS, ReadingColumns
from devices.catalogue import KINDS, THRESHOLDS
from devices.kinds import Event, Kind

# Flag bits of `Fleet.flags`.
ONLINE = 1 << 0  # heard from within 2.5 heartbeat intervals
OFFLINE = 1 << 1  # declared offline by a sweep (exactly one transition each way)
ALARM = 1 << 2
FAULT = 1 << 3
TAMPER = 1 << 4
LOW_BATTERY = 1 << 5
POWER_FAIL = 1 << 6
MAINTENANCE = 1 << 7  # the device's own flag; a unit's flag is `Fleet.unit_maintenance`
QUARANTINED = 1 << 8  # auto-registered from traffic, not yet registered by an operator
FLAPPING = 1 << 9  # 3+ alarm/clear cycles in 10 minutes, until an operator clears it
VALVE_CLOSED = 1 << 10
BREAKER_TRIPPED = 1 << 11
FLOODING = 1 << 12  # alarm decisions above a sustained rate (alerting.flood), until an operator clears it
HYDRANT = 1 << 13  # a water device registered `hydrant: true` (`set_hydrant`); kept by `upsert` / `bulk_load`

#: Flag bit -> name, as shown by the API.
FLAG_NAMES: dict[int, str] = {
    ONLINE: "online",
    OFFLINE: "offline",
    ALARM: "alarm",
    FAULT: "fault",
    TAMPER: "tamper",
    LOW_BATTERY: "low_battery",
    POWER_FAIL: "power_fail",
    MAINTENANCE: "maintenance",
    QUARANTINED: "quarantined",
    FLAPPING: "flapping",
    VALVE_CLOSED: "valve_closed",
    BREAKER_TRIPPED: "breaker_tripped",
    FLOODING: "flooding",
    HYDRANT: "hydrant",
}
#: Bits owned by the registry (`upsert`, `bulk_load`, maintenance helpers), not by live traffic.
REGISTRY_FLAGS = MAINTENANCE | QUARANTINED
#: Reachability bits; a uitd component shows those of its transmission device.
LIVENESS_FLAGS = ONLINE | OFFLINE

#: Events that set a flag and events that clear it. `battery_pct` readings also drive LOW_BATTERY.
EVENT_SETS: dict[Event, int] = {
    Event.alarm: ALARM,
    Event.fault: FAULT,
    Event.tamper: TAMPER,
    Event.low_battery: LOW_BATTERY,
    Event.power_fail: POWER_FAIL,
    Event.valve_closed: VALVE_CLOSED,
    Event.breaker_tripped: BREAKER_TRIPPED,
}
EVENT_CLEARS: dict[Event, int] = {
    Event.alarm_clear: ALARM,
    Event.fault_clear: FAULT,
    Event.tamper_clear: TAMPER,
    Event.power_restore: POWER_FAIL,
    Event.valve_opened: VALVE_CLOSED,
    Event.breaker_closed: BREAKER_TRIPPED,
}
EVENT_FLAGS = ALARM | FAULT | TAMPER | LOW_BATTERY | POWER_FAIL | VALVE_CLOSED | BREAKER_TRIPPED

#: Default heartbeat interval per kind (CONTRACT §8), from the catalogue.
DEFAULT_HEARTBEAT_S: dict[Kind, int] = {kind: spec.heartbeat_s for kind, spec in KINDS.items()}
OFFLINE_FACTOR = 2.5
#: LOW_BATTERY below this `battery_pct` unless a device's `thresholds["battery_pct_min"]` says otherwise.
DEFAULT_BATTERY_PCT_MIN = 20.0
#: `Fleet.offline_at_ms` of a device the sweep does not watch.
NEVER = np.iinfo(np.int64).max
#: `Fleet.held_since` of a device whose condition does not hold; `Fleet.commanded` of one never sent the command.
NOT_HELD = np.iinfo(np.int64).min
#: Commands whose last sending time the fleet keeps (`note_command`): the core reads them (a breaker
#: tripping within 120 s of a `breaker_trip` is the command's effect, not an alarm).
NOTED_COMMANDS = ("breaker_trip", "valve_close", "port_cutoff")
#: Reading conditions of the correlation core that must hold for a while (`held_since`).
HELD_CONDITIONS = ("co_major", "co_short", "port_current")

#: Per-device threshold names (defaults in `devices.catalogue.THRESHOLDS`). NaN = use the default.
THRESHOLD_NAMES = tuple(THRESHOLDS)

_SET_BITS = np.zeros(len(Event), np.uint16)
_CLEAR_BITS = np.zeros(len(Event), np.uint16)
for _event, _bit in EVENT_SETS.items():
    _SET_BITS[_event] = _bit
for _event, _bit in EVENT_CLEARS.items():
    _CLEAR_BITS[_event] = _bit
_EVENT_BITS = tuple(bit for bit in FLAG_NAMES if bit & EVENT_FLAGS)
_HEARTBEAT_MS = np.zeros(max(Kind) + 1, np.int64)
for _kind, _seconds in DEFAULT_HEARTBEAT_S.items():
    _HEARTBEAT_MS[_kind] = _seconds * 1000


def _u16(bits: int) -> np.uint16:
    return np.uint16(bits & 0xFFFF)


def _group_last(keys: np.ndarray) -> np.ndarray:
    """For sorted `keys`, a mask of the last row of every run of equal keys."""
    last = np.ones(keys.shape[0], bool)
    np.not_equal(keys[1:], keys[:-1], out=last[:-1])
    return last


class Interner:
    """Strings <-> dense int ids (units, regions, cells)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.ids: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.names)

    def intern(self, name: str) -> int:
        i = self.ids.get(name)
        if i is None:
            i = self.ids[name] = len(self.names)
            self.names.append(name)
        return i

    def get(self, name: str) -> int:
        return self.ids.get(name, -1)


@dataclass(slots=True, frozen=True)
class ClockSkewMark:
    """A device whose clock runs ahead of the service (`ingest.clock_skew`): since when (receive
    time of the first report of the streak) and by how much its latest such report was ahead."""

    since_ms: int
    last_offset_s: float


@dataclass(slots=True, frozen=True)
class AppliedBatch:
    """What one `Fleet.apply` changed.

    `slots`: every slot the batch touched, ascending (the readings' own slots and the
    transmission devices of uitd components); `flags_before` / `flags_after`: their flags
    around the batch; `came_online`: those that were OFFLINE before it (one report per
    transition); `late_rows`: readings whose events were ignored as older than their device's
    state (see `Fleet.apply`).
    """

    slots: np.ndarray
    flags_before: np.ndarray
    flags_after: np.ndarray
    came_online: np.ndarray
    late_rows: int

    @classmethod
    def empty(cls) -> AppliedBatch:
        none = np.zeros(0, np.int32)
        return cls(none, np.zeros(0, np.uint16), np.zeros(0, np.uint16), none, 0)


class Fleet:
    """Columns of live device state. Only `devices` code mutates them.

    Per-slot columns (length `capacity`, valid up to `size`):
      kind int8, unit int32 (-1 none), cell int32 (-1 none), parent int32 (-1; a uitd
      component's transmission device), heartbeat_ms int64, last_seen_ms int64 (receive time,
      0 never), last_ts_ms int64 (device time of the newest reading), offline_since_ms int64
      (0 when not offline), offline_at_ms int64 (when the sweep will call the device offline:
      last_seen_ms + 2.5 heartbeats, `NEVER` for devices never seen, already offline or uitd
      components), mute_until_ms int64, flags uint16 (bits above), dirty bool (changed since
      the last `take_dirty`), and `values[name]` float32 for every name of
      `devices.batch.NUMERIC_COLUMNS` (NaN unknown) with `value_ts_ms[name]` int64 the device
      time each was reported (a metric no device reported yet is a read-only all-NaN / all-0 view
      that takes no memory, until `value_columns` allocates it: 12 bytes a slot per metric,
      most of which a fleet never reports), `thresholds[name]` float32 for every `THRESHOLD_NAMES` entry
      (NaN = default; read-only: `set_thresholds` writes them).
    Per-unit columns (length >= `len(units)`): unit_region int32 (region id, -1),
      unit_maintenance bool.
    `clock_skew`: device id -> `ClockSkewMark` of the few devices whose clock is ahead (live only).
    """

    def __init__(self, capacity: int = 1024) -> None:
        self.size = 0
        self.device_ids: list[str] = []
        self.index: dict[str, int] = {}
        self.units = Interner()
        self.regions = Interner()
        self.cells = Interner()
        self.unit_region = np.full(16, -1, np.int32)
        self.unit_maintenance = np.zeros(16, bool)
        #: Devices holding an override of each threshold: one nobody overrides needs no per-device look-up.
        self.overrides = dict.fromkeys(THRESHOLD_NAMES, 0)
        self.clock_skew: dict[str, ClockSkewMark] = {}
        self._components: dict[int, int] = {}  # parent slot -> its components, counted once (add_component)
        self._times: dict[str, np.ndarray] = {}  # `held_since` / `commanded` columns, allocated on first write
        self.stored_values: set[str] = set()  # metrics with allocated columns (`value_columns`)
        self._alloc(capacity)
        _freeze(self.thresholds)

    def _alloc(self, capacity: int) -> None:
        self.capacity = capacity
        self.kind = np.zeros(capacity, np.int8)
        self.unit = np.full(capacity, -1, np.int32)
        self.cell = np.full(capacity, -1, np.int32)
        self.parent = np.full(capacity, -1, np.int32)
        self.heartbeat_ms = np.zeros(capacity, np.int64)
        self.last_seen_ms = np.zeros(capacity, np.int64)
        self.last_ts_ms = np.zeros(capacity, np.int64)
        self.offline_since_ms = np.zeros(capacity, np.int64)
        self.offline_at_ms = np.full(capacity, NEVER, np.int64)
        self.mute_until_ms = np.zeros(capacity, np.int64)
        self.flags = np.zeros(capacity, np.uint16)
        self.dirty = np.zeros(capacity, bool)
        self.values = {name: _unset(capacity, np.float32, np.nan) for name in NUMERIC_COLUMNS}
        self.value_ts_ms = {name: _unset(capacity, np.int64, 0) for name in NUMERIC_COLUMNS}
        for name in self.stored_values:
            self.values[name] = np.full(capacity, np.nan, np.float32)
            self.value_ts_ms[name] = np.zeros(capacity, np.int64)
        self.thresholds = {name: np.full(capacity, np.nan, np.float32) for name in THRESHOLD_NAMES}
        self._times = {name: np.full(capacity, NOT_HELD, np.int64) for name in self._times}

    def _columns(self) -> dict[str, Any]:
        cols: dict[str, Any] = {
            name: getattr(self, name)
            for name in ("kind", "unit", "cell", "parent", "heartbeat_ms", "last_seen_ms", "last_ts_ms",
                         "offline_since_ms", "offline_at_ms", "mute_until_ms", "flags", "dirty")
        }
        cols.update({f"values.{k}": self.values[k] for k in self.stored_values})
        cols.update({f"value_ts_ms.{k}": self.value_ts_ms[k] for k in self.stored_values})
        cols.update({f"thresholds.{k}": v for k, v in self.thresholds.items()})
        cols.update({f"times.{k}": v for k, v in self._times.items()})
        return cols

    def _grow(self, need: int) -> None:
        if need <= self.capacity:
            return
        old = self._columns()
        new_capacity = max(need, self.capacity * 2)
        self._alloc(new_capacity)
        for name, arr in self._columns().items():
            arr[: self.size] = old[name][: self.size]
        _freeze(self.thresholds)

    def value_columns(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The writable (values, value_ts_ms) columns of a metric, allocated on first use."""
        if name not in self.stored_values:
            self.stored_values.add(name)
            self.values[name] = np.full(self.capacity, np.nan, np.float32)
            self.value_ts_ms[name] = np.zeros(self.capacity, np.int64)
        return self.values[name], self.value_ts_ms[name]

    def _grow_units(self) -> None:
        n = len(self.units)
        if n > self.unit_region.shape[0]:
            cap = max(n, self.unit_region.shape[0] * 2)
            more = cap - self.unit_region.shape[0]
            self.unit_region = np.concatenate([self.unit_region, np.full(more, -1, np.int32)])
            self.unit_maintenance = np.concatenate([self.unit_maintenance, np.zeros(more, bool)])

    # -- registry ---------------------------------------------------------------------------

    def slot(self, device_id: str) -> int:
        """The slot of a device, or -1."""
        return self.index.get(device_id, -1)

    def slots(self, device_ids: list[str]) -> np.ndarray:
        """Slots of many devices as int32 (-1 for unknown ones)."""
        get = self.index.get
        return np.fromiter((get(d, -1) for d in device_ids), np.int32, len(device_ids))

    def set_unit(self, unit_id: str, region: str | None = None, maintenance: bool | None = None) -> int:
        """Intern a unit (and its region path); answer its unit id."""
        u = self.units.intern(unit_id)
        self._grow_units()
        if region is not None:
            self.unit_region[u] = self.regions.intern(region)
        if maintenance is not None:
            self.unit_maintenance[u] = maintenance
        return u

    def upsert(
        self,
        device_id: str,
        kind: Kind,
        *,
        unit_id: str | None = None,
        cell_id: str | None = None,
        heartbeat_s: int | None = None,
        parent_id: str | None = None,
        maintenance: bool = False,
        quarantined: bool = False,
        hydrant: bool | None = None,
    ) -> int:
        """Add a device or update its registry fields; answer its slot. Live state is kept, and
        the HYDRANT mark unless `hydrant` is given."""
        s = self.index.get(device_id)
        if s is None:
            s = self.size
            self._grow(s + 1)
            self.size += 1
            self.device_ids.append(device_id)
            self.index[device_id] = s
        self.kind[s] = kind
        self.unit[s] = self.set_unit(unit_id) if unit_id else -1
        self.cell[s] = self.cells.intern(cell_id) if cell_id else -1
        self.parent[s] = self.index.get(parent_id, -1) if parent_id else -1
        self.heartbeat_ms[s] = int((heartbeat_s or DEFAULT_HEARTBEAT_S[Kind(kind)]) * 1000)
        old = int(self.flags[s])
        flags = old & ~REGISTRY_FLAGS | (MAINTENANCE if maintenance else 0) | (QUARANTINED if quarantined else 0)
        if hydrant is not None:
            flags = flags | HYDRANT if hydrant else flags & ~HYDRANT
        self.flags[s] = flags
        self.dirty[s] |= flags != old
        self.refresh_offline_at(np.array([s]))
        return s

    def add_component(self, parent: int, detector_id: str, kind: Kind, limit: int) -> int:
        """Register a new component (`detector_id`) of the device in slot `parent`, in its unit;
        answer its slot, or -1 when the device has `limit` components already."""
        count = self._components.get(parent)
        if count is None:
            count = int(np.count_nonzero(self.parent[: self.size] == parent))
        if count >= limit:
            return -1
        unit = int(self.unit[parent])
        slot = self.upsert(detector_id, kind, unit_id=self.units.names[unit] if unit >= 0 else None,
                           parent_id=self.device_ids[parent])
        self._components[parent] = count + 1
        return slot

    def bulk_load(
        self,
        device_ids: Sequence[str],
        kinds: Sequence[Kind | str | int] | np.ndarray,
        *,
        unit_ids: Sequence[str | None] | None = None,
        cell_ids: Sequence[str | None] | None = None,
        heartbeat_s: Sequence[float | None] | np.ndarray | None = None,
        parent_ids: Sequence[str | None] | None = None,
        maintenance: Sequence[bool] | np.ndarray | None = None,
        quarantined: Sequence[bool] | np.ndarray | None = None,
        hydrant: Sequence[bool] | np.ndarray | None = None,
    ) -> np.ndarray:
        """`upsert` for many devices at once (start-up from the registry); answers their slots.

        Columns are parallel sequences; kinds are `Kind`s, their names or codes; None (or NaN
        heartbeat) means absent. Parents may appear anywhere in the same load. Where a device id
        repeats, its last row wins. Live state of known devices is kept, and HYDRANT marks when
        `hydrant` is None.
        """
        n = len(device_ids)
        index, ids = self.index, self.device_ids
        self._components.clear()  # parents may gain components: count again when asked
        # C-level passes (map, zip, dict.fromkeys) rather than Python loops: a million at start-up
        start = len(ids)
        fresh = not ids  # an empty fleet (a start-up) takes the ids in order, if no id repeats
        if fresh:
            index.update(zip(device_ids, range(n)))
            if len(index) != n:
                index.clear()
                fresh = False
        if fresh:
            ids.extend(device_ids)
            slots = rows = np.arange(n, dtype=np.int64)
        else:
            added = [d for d in dict.fromkeys(device_ids) if d not in index]  # once each, first-given order
            index.update(zip(added, range(start, start + len(added))))
            ids.extend(added)
            slots = np.fromiter(map(index.__getitem__, device_ids), np.int64, n)
            # keep the last row of every device id
            rev_first = np.unique(slots[::-1], return_index=True)[1]
            rows = np.sort(n - 1 - rev_first)
        self._grow(len(ids))
        self.size = len(ids)
        s = slots[rows]

        kind = self._kind_codes(kinds)[rows]
        self.kind[s] = kind
        self.unit[s] = self._intern_column(self.units, unit_ids, n)[rows]
        self._grow_units()
        self.cell[s] = self._intern_column(self.cells, cell_ids, n)[rows]
        if parent_ids is None:
            self.parent[s] = -1
        else:
            parents = map(index.get, parent_ids, repeat(-1))  # type: ignore[arg-type]  # None (no parent): -1
            self.parent[s] = np.fromiter(parents, np.int32, n)[rows]
        hb = np.full(n, np.nan) if heartbeat_s is None else np.array(heartbeat_s, np.float64)  # None: NaN
        hb = hb[rows]
        self.heartbeat_ms[s] = np.where(np.isnan(hb), _HEARTBEAT_MS[kind], np.nan_to_num(hb) * 1000).astype(np.int64)
        registry = np.zeros(len(rows), np.uint16)
        if maintenance is not None:
            registry |= np.where(np.asarray(maintenance, bool)[rows], MAINTENANCE, 0).astype(np.uint16)
        if quarantined is not None:
            registry |= np.where(np.asarray(quarantined, bool)[rows], QUARANTINED, 0).astype(np.uint16)
        old = self.flags[s]
        new = (old & _u16(~REGISTRY_FLAGS)) | registry
        if hydrant is not None:  # else each device keeps its mark
            new = (new & _u16(~HYDRANT)) | np.where(np.asarray(hydrant, bool)[rows], HYDRANT, 0).astype(np.uint16)
        self.flags[s] = new
        self.dirty[s] |= new != old
        self.refresh_offline_at(s)
        return slots.astype(np.int32)

    @staticmethod
    def _kind_codes(kinds: Sequence[Kind | str | int] | np.ndarray) -> np.ndarray:
        if isinstance(kinds, np.ndarray) and kinds.dtype.kind in "iu":
            codes = kinds.astype(np.int8)
        else:
            code = {k: Kind.parse(k) if isinstance(k, str) else Kind(k) for k in set(kinds)}  # a few distinct kinds
            codes = np.fromiter(map(code.__getitem__, kinds), np.int8, len(kinds))
        if codes.size and (codes.min() < min(Kind) or codes.max() > max(Kind)):
            raise ValueError(f"unknown kind code in {sorted(set(codes.tolist()))}")
        return codes

    @staticmethod
    def _intern_column(interner: Interner, names: Sequence[str | None] | None, n: int) -> np.ndarray:
        if names is None:
            return np.full(n, -1, np.int32)
        code = {x: interner.intern(x) if x else -1 for x in dict.fromkeys(names)}  # each distinct name once
        return np.fromiter(map(code.__getitem__, names), np.int32, n)

    # -- operator state ---------------------------------------------------------------------

    def unit_slots(self, unit_id: str) -> np.ndarray:
        """Slots of a unit's devices, ascending (empty for an unknown unit)."""
        u = self.units.get(unit_id)
        if u < 0:
            return np.zeros(0, np.int32)
        return np.flatnonzero(self.unit[: self.size] == u).astype(np.int32)

    def set_maintenance(self, slot: int, on: bool) -> None:
        """Put one device in or out of maintenance (its own flag; see `in_maintenance`)."""
        self._set_bit(slot, MAINTENANCE, on)

    def set_unit_maintenance(self, unit_id: str, on: bool) -> None:
        """Put a whole unit in or out of maintenance."""
        self.set_unit(unit_id, maintenance=on)

    def in_maintenance(self, slots: np.ndarray) -> np.ndarray:
        """Whether each device is in maintenance, by its own flag or its unit's."""
        slots = np.asarray(slots, np.intp)
        unit = self.unit[slots]
        by_unit = np.where(unit >= 0, self.unit_maintenance[np.maximum(unit, 0)], False)
        return ((self.flags[slots] & MAINTENANCE) != 0) | by_unit

    def mute(self, slot: int, until_ms: int) -> None:
        """Mute a device (by command) until the given time; 0 unmutes."""
        self.mute_until_ms[slot] = until_ms
        self.dirty[slot] = True

    def mark_flapping(self, slots: np.ndarray) -> None:
        """Mark detectors as flapping (the correlation core decides when)."""
        slots = np.asarray(slots, np.intp)
        self.flags[slots] |= _u16(FLAPPING)
        self.dirty[slots] = True

    def clear_flapping(self, slot: int) -> None:
        """An operator clears a detector's flapping mark."""
        self._set_bit(slot, FLAPPING, False)

    def set_flooding(self, slot: int, on: bool) -> None:
        """Mark a detector flooding (the alarm lifecycle decides when), or an operator clears it."""
        self._set_bit(slot, FLOODING, on)

    def set_hydrant(self, slot: int, on: bool) -> None:
        """Register a water device as a fire hydrant (`hydrant: true`) or not: a hydrant's flow
        above `flow_open_m3h` is a hydrant_open alarm."""
        self._set_bit(slot, HYDRANT, on)

    def note_command(self, slot: int, cmd: str, ts_ms: int) -> None:
        """Remember that `cmd` was sent to the device at `ts_ms` (service time); the command
        service calls it for every command sent, and only `NOTED_COMMANDS` are kept."""
        if cmd in NOTED_COMMANDS:
            self._time_column(f"command.{cmd}")[slot] = ts_ms

    def commanded(self, cmd: str) -> np.ndarray:
        """Per slot, when `cmd` (one of `NOTED_COMMANDS`) was last sent, NOT_HELD never; read-only."""
        if cmd not in NOTED_COMMANDS:
            raise ValueError(f"unknown command {cmd!r}; noted: {', '.join(NOTED_COMMANDS)}")
        return self._time_view(f"command.{cmd}")

    def held_since(self, condition: str) -> np.ndarray:
        """Per slot, the device time since when a `HELD_CONDITIONS` condition has held in every
        reading of the device, NOT_HELD when it does not; read-only (the core sets it)."""
        if condition not in HELD_CONDITIONS:
            raise ValueError(f"unknown condition {condition!r}; known: {', '.join(HELD_CONDITIONS)}")
        return self._time_view(f"held.{condition}")

    def set_held_since(self, condition: str, slots: np.ndarray, since_ms: np.ndarray) -> None:
        """The correlation core records since when `condition` holds for these devices."""
        if condition not in HELD_CONDITIONS:
            raise ValueError(f"unknown condition {condition!r}; known: {', '.join(HELD_CONDITIONS)}")
        if slots.size:
            self._time_column(f"held.{condition}")[slots] = since_ms

    def _time_view(self, name: str) -> np.ndarray:
        col = self._times.get(name)
        if col is None:  # never written: all NOT_HELD, no memory
            return np.broadcast_to(np.int64(NOT_HELD), (self.capacity,))
        view = col.view()
        view.flags.writeable = False
        return view

    def _time_column(self, name: str) -> np.ndarray:
        col = self._times.get(name)
        if col is None:
            col = self._times[name] = np.full(self.capacity, NOT_HELD, np.int64)
        return col

    def set_thresholds(self, slot: int, thresholds: Mapping[str, float | None]) -> None:
        """Replace a device's thresholds: names not given (or None) fall back to the defaults."""
        unknown = set(thresholds) - set(THRESHOLD_NAMES)
        if unknown:
            raise ValueError(f"unknown thresholds {sorted(unknown)}; expected some of {', '.join(THRESHOLD_NAMES)}")
        for name, col in self.thresholds.items():
            v = thresholds.get(name)
            new = np.float32(np.nan if v is None else v)
            self.overrides[name] += int(not np.isnan(new)) - int(not np.isnan(col[slot]))
            col.flags.writeable = True
            col[slot] = new
            col.flags.writeable = False

    def _set_bit(self, slot: int, bit: int, on: bool) -> None:
        old = int(self.flags[slot])
        self.flags[slot] = old | bit if on else old & ~bit
        self.dirty[slot] |= int(self.flags[slot]) != old

    # -- live state ---------------------------------------------------------------------------

    def apply(self, batch: ReadingColumns) -> AppliedBatch:
        """Fold one batch of readings into the state; rows with slot -1 are ignored.

        - `last_seen_ms` / `last_ts_ms`: the maximum receive / device time, never lowered.
        - `values[name]`: per slot, the non-NaN value with the newest device time in the batch
          (on equal times the later row), stored only if strictly newer than the stored one.
        - Flags: rows older (device time) than the device's `last_ts_ms` before this batch
          are late and change no flag. Of the others, in device-time order (the later row on
          equal times), the last event per flag wins: see `EVENT_SETS` / `EVENT_CLEARS`. A
          `battery_pct` reading below the device's `battery_pct_min` (default 20) sets
          LOW_BATTERY, at or above it clears it; a `low_battery` event in the same row wins.
        - Every reading marks its device ONLINE; one from an OFFLINE device clears OFFLINE and
          `offline_since_ms`, and the slot is reported in `came_online`. A uitd component's
          reading also counts as heard from its transmission device (`parent`).
        """
        rows = batch if bool((batch.slot >= 0).all()) else batch.take(batch.slot >= 0)
        n = len(rows)
        if n == 0:
            return AppliedBatch.empty()
        if int(rows.slot.max()) >= self.size:
            raise ValueError(f"slot {int(rows.slot.max())} is not a device (fleet size {self.size})")
        order = np.lexsort((rows.ts_ms, rows.slot))
        slot = rows.slot[order].astype(np.intp)
        ts = rows.ts_ms[order]
        last = _group_last(slot)
        ends = np.flatnonzero(last)
        starts = np.concatenate(([0], ends[:-1] + 1))
        own = slot[ends]
        parents = self.parent[own]
        touched = np.unique(np.concatenate([own, parents[parents >= 0]]))
        flags_before = self.flags[touched]

        prior_ts = self.last_ts_ms[own]
        fresh = ts >= np.repeat(prior_ts, ends - starts + 1)
        self.last_ts_ms[own] = np.maximum(prior_ts, ts[ends])
        self._apply_values(rows.values, order, slot, ts)
        self._apply_events(rows, order, slot, fresh)

        heard = np.maximum.reduceat(rows.received_ms[order], starts)
        has_parent = parents >= 0
        np.maximum.at(self.last_seen_ms, np.concatenate([own, parents[has_parent]]),
                      np.concatenate([heard, heard[has_parent]]))
        came_online = touched[(flags_before & OFFLINE) != 0]
        self.flags[touched] = (self.flags[touched] & _u16(~OFFLINE)) | ONLINE
        self.offline_since_ms[touched] = 0
        self.dirty[touched] = True
        self.refresh_offline_at(touched)
        return AppliedBatch(touched.astype(np.int32), flags_before, self.flags[touched],
                            came_online.astype(np.int32), n - int(fresh.sum()))

    def _apply_values(
        self, values: Mapping[str, np.ndarray], order: np.ndarray, slot: np.ndarray, ts: np.ndarray
    ) -> None:
        for name, column in values.items():
            if name not in self.values:
                continue
            v = column[order]
            rows = np.flatnonzero(~np.isnan(v))
            if rows.size == 0:
                continue
            stored, stored_ts = self.value_columns(name)
            pick = rows[_group_last(slot[rows])]
            s, t = slot[pick], ts[pick]
            newer = (t > stored_ts[s]) | np.isnan(stored[s])
            s = s[newer]
            stored[s] = v[pick[newer]]
            stored_ts[s] = t[newer]

    def _apply_events(self, rows: ReadingColumns, order: np.ndarray, slot: np.ndarray, fresh: np.ndarray) -> None:
        event = rows.event[order]
        sets = _SET_BITS[event]
        clears = _CLEAR_BITS[event]
        battery = rows.values.get("battery_pct")
        if battery is not None:
            pct = battery[order]
            floor = DEFAULT_BATTERY_PCT_MIN
            if self.overrides["battery_pct_min"]:
                floor = self.thresholds["battery_pct_min"][slot].astype(np.float64)
                floor[np.isnan(floor)] = DEFAULT_BATTERY_PCT_MIN
            sets = sets | np.where(pct < floor, LOW_BATTERY, 0).astype(np.uint16)
            clears = clears | np.where(pct >= floor, LOW_BATTERY, 0).astype(np.uint16)
        # a row that both sets and clears a bit (low_battery event, good battery_pct) sets it
        relevant = np.where(fresh, sets | clears, 0).astype(np.uint16)
        for bit in _EVENT_BITS:
            rows_ = np.flatnonzero(relevant & bit)
            if rows_.size == 0:
                continue
            pick = rows_[_group_last(slot[rows_])]
            s = slot[pick]
            self.flags[s] = (self.flags[s] & _u16(~bit)) | (sets[pick] & bit)

    def sweep(self, now_ms: int) -> np.ndarray:
        """Declare offline every watched device silent for more than 2.5 heartbeats; answer their slots.

        A device goes offline at the first sweep with `now_ms - last_seen_ms > 2.5 *
        heartbeat_ms`, once per transition; `offline_since_ms` is the moment it became overdue.
        Devices never seen stay unknown; uitd components follow their transmission device.
        """
        due = np.flatnonzero(self.offline_at_ms[: self.size] < now_ms)
        if due.size:
            self.offline_since_ms[due] = self.offline_at_ms[due]
            self.offline_at_ms[due] = NEVER
            self.flags[due] = (self.flags[due] & _u16(~ONLINE)) | OFFLINE
            self.dirty[due] = True
        return due.astype(np.int32)

    def refresh_offline_at(self, slots: np.ndarray) -> None:
        """Recompute `offline_at_ms` of these slots after their state or registry changed."""
        seen = self.last_seen_ms[slots]
        overdue = np.floor(self.heartbeat_ms[slots] * OFFLINE_FACTOR).astype(np.int64)
        watched = (seen > 0) & ((self.flags[slots] & OFFLINE) == 0) & (self.parent[slots] < 0)
        self.offline_at_ms[slots] = np.where(watched, seen + overdue, NEVER)

    # -- checkpoints (rows themselves: devices.checkpoint) ---------------------------------------

    def take_dirty(self) -> np.ndarray:
        """Slots changed since the last call, and forget them (give them back with `mark_dirty`
        if writing their checkpoint fails)."""
        slots = np.flatnonzero(self.dirty[: self.size])
        self.dirty[slots] = False
        return slots.astype(np.int32)

    def mark_dirty(self, slots: Iterable[int] | np.ndarray) -> None:
        self.dirty[np.asarray(slots, np.intp)] = True


def _unset(capacity: int, dtype: type, fill: float) -> np.ndarray:
    """A read-only column of `capacity` copies of `fill` that takes no memory (stride 0)."""
    return np.broadcast_to(np.array(fill, dtype), (capacity,))


def decimal32(values: np.ndarray) -> np.ndarray:
    """float32 values (such as thresholds) as float64 at their 7-significant-digit decimal, so that a
    threshold set to 0.1 compares as 0.1 and not as 0.10000000149; NaN and 0 stay as they are."""
    x = values.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        scale = 10.0 ** (6 - np.floor(np.log10(np.abs(x))))
        out = np.round(x * scale) / scale
    return np.where(np.isfinite(out), out, x)


def _freeze(columns: dict[str, np.ndarray]) -> None:
    """Make columns read-only: thresholds change through `Fleet.set_thresholds` only, which keeps
    `Fleet.overrides` true."""
    for col in columns.values():
        col.flags.writeable = False

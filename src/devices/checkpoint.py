"""Fleet state <-> rows of table `device_state` (migrations/0001_initial.sql), so live state
(online/offline, alarm and fault flags, last values) survives a restart.

A row is `(device_id, last_seen, status, battery_pct, rsrp_dbm, last_values, flags)`:
`last_seen` an aware UTC datetime (None: never seen), `status` as the API shows it,
`battery_pct` / `rsrp_dbm` the stored values (None: unknown), `flags` the raw flag bits and
`last_values` a JSON-ready dict

    {"values": {name: {"value": 4.2, "ts_ms": 1795341600000}, ...},
     "last_ts_ms": ..., "offline_since_ms": ..., "muted_until_ms": ...}

(times left out when 0). `restore` reads the same shape back (`last_values` may also be the
JSON text asyncpg hands out without a codec); registry bits of `flags` (maintenance,
quarantine) stay as the registry loaded them, since the `devices` table owns them.

A start-up at a million devices reads a snapshot instead (table `fleet_snapshot`, migration
0027): the fleet's live columns as raw arrays, one `bytea` row per column, written whole now and
then (`snapshot_records`); then the `device_state` rows written since it (`STATE_QUERY` and
`VALUES_QUERY` read only those). Without a snapshot of this `SNAPSHOT_FORMAT`, every row is read.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import repeat
from typing import Any

import numpy as np

from devices.fleet import REGISTRY_FLAGS, Fleet
from devices.fleet_query import STATUS_NAMES, decimal, status_codes

COLUMNS = ("device_id", "last_seen", "status", "battery_pct", "rsrp_dbm", "last_values", "flags")
#: Layout of `fleet_snapshot`'s rows; a snapshot in any other is not read (the rows are, all of them).
SNAPSHOT_FORMAT = 1
SNAPSHOT_COLUMNS = ("name", "format", "dtype", "data")
#: Every row of the snapshot, for `restore_snapshot`.
SNAPSHOT_QUERY = "SELECT name, format, dtype, data, taken_at FROM fleet_snapshot"
#: Live columns in a snapshot besides the metrics', and in `STATE_QUERY`'s order.
_STATE = ("last_seen_ms", "flags", "last_ts_ms", "offline_since_ms", "mute_until_ms")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def _times(fleet: Fleet) -> tuple[tuple[str, np.ndarray], ...]:
    return (("last_ts_ms", fleet.last_ts_ms), ("offline_since_ms", fleet.offline_since_ms),
            ("muted_until_ms", fleet.mute_until_ms))


def ms_to_datetime(ms: int) -> datetime:
    return EPOCH + ms * _MS


def datetime_to_ms(dt: datetime) -> int:
    """Epoch ms of a datetime; a naive one is taken as UTC."""
    return ((dt if dt.tzinfo else dt.replace(tzinfo=UTC)) - EPOCH) // _MS


@contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic collector while making or reading many small dicts (none in a cycle):
    the collections their allocation triggers keep re-walking the growing heap, which made a
    million rows take 2.5 times as long."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def checkpoint_rows(fleet: Fleet, slots: np.ndarray | None = None) -> list[tuple[Any, ...]]:
    """Rows of these slots (every device when None), in the order of `COLUMNS`."""
    with _no_gc():
        return _rows(fleet, slots)


def _rows(fleet: Fleet, slots: np.ndarray | None) -> list[tuple[Any, ...]]:
    slots = np.arange(fleet.size) if slots is None else np.asarray(slots, np.intp)
    values: list[dict[str, dict[str, Any]]] = [{} for _ in range(slots.shape[0])]
    for name in fleet.stored_values:
        v = fleet.values[name][slots]
        have = np.flatnonzero(~np.isnan(v))
        ts = fleet.value_ts_ms[name][slots[have]].tolist()
        for i, x, t in zip(have.tolist(), decimal(v[have]).tolist(), ts):
            values[i][name] = {"value": x, "ts_ms": t}
    times = [(key, column[slots].tolist()) for key, column in _times(fleet)]
    ids = fleet.device_ids
    rows = []
    for i, (s, seen, code, flags) in enumerate(zip(slots.tolist(), fleet.last_seen_ms[slots].tolist(),
                                                   status_codes(fleet, slots).tolist(), fleet.flags[slots].tolist())):
        vals = values[i]
        doc: dict[str, Any] = {"values": vals}
        for key, column in times:
            if column[i]:
                doc[key] = column[i]
        battery, rsrp = vals.get("battery_pct"), vals.get("rsrp_dbm")
        rows.append((ids[s], ms_to_datetime(seen) if seen else None, STATUS_NAMES[code],
                     battery and battery["value"], rsrp and rsrp["value"], doc, flags))
    return rows


#: Rows of `device_state` written since $1, the snapshot's time (all of them when NULL).
_SINCE = "($1::timestamptz IS NULL OR updated_at >= $1)"
#: `device_state` flattened by PostgreSQL into one row of six arrays, so a restart decodes plain
#: columns instead of a million datetimes and JSON documents (a million devices: about 4 s instead
#: of 10 s), and a few arrays instead of a million records. One aggregate node feeds every
#: `array_agg` the same rows in the same order.
STATE_QUERY = """
SELECT array_agg(device_id), array_agg(coalesce((extract(epoch FROM last_seen) * 1000)::bigint, 0)), array_agg(flags),
       array_agg(coalesce((last_values->>'last_ts_ms')::bigint, 0)),
       array_agg(coalesce((last_values->>'offline_since_ms')::bigint, 0)),
       array_agg(coalesce((last_values->>'muted_until_ms')::bigint, 0))
FROM device_state WHERE """ + _SINCE
#: Each stored value name with its devices, values and times.
VALUES_QUERY = """
SELECT v.key, array_agg(s.device_id), array_agg((v.value->>'value')::float8), array_agg((v.value->>'ts_ms')::bigint)
FROM device_state s, jsonb_each(s.last_values->'values') v WHERE """ + _SINCE + " GROUP BY v.key"

#: device_ids, then (last_seen_ms, flags, last_ts_ms, offline_since_ms, muted_until_ms) of each
StateColumns = tuple[Sequence[str], Sequence[Sequence[int]]]
#: (value name, device_ids, values, times)
ValueColumn = tuple[str, Sequence[str], Sequence[float], Sequence[int]]


def restore(fleet: Fleet, rows: Iterable[Sequence[Any]]) -> int:
    """Load rows (as `checkpoint_rows` makes them) of registered devices; answers how many.

    Rows of devices the fleet does not know are skipped: load the registry first. A restored
    device that was online and went silent while the service was down goes offline at the
    first sweep, with `offline_since_ms` the moment it became overdue.
    """
    with _no_gc():
        device_ids: list[str] = []
        state: list[tuple[int, ...]] = []
        values: dict[str, tuple[list[str], list[float], list[int]]] = {}
        for r in rows:
            doc = json.loads(r[5]) if isinstance(r[5], (str, bytes)) else r[5] or {}
            seen = 0 if r[1] is None else datetime_to_ms(r[1])
            device_ids.append(r[0])
            state.append((seen, int(r[6]), *(int(doc.get(key, 0)) for key, _ in _times(fleet))))
            for name, item in doc.get("values", {}).items():
                ids, vs, ts = values.setdefault(name, ([], [], []))
                ids.append(r[0])
                vs.append(item["value"])
                ts.append(item["ts_ms"])
        return _restore(fleet, (device_ids, list(zip(*state))), [(name, *cols) for name, cols in values.items()])


def restore_state(fleet: Fleet, state: Sequence[Any], values: Iterable[Sequence[Any]]) -> int:
    """`restore` from the row of `STATE_QUERY` and the rows of `VALUES_QUERY` (after
    `restore_snapshot` when they are the rows written since the snapshot)."""
    ids, *columns = (c or [] for c in state)  # no saved state: NULL arrays
    with _no_gc():
        return _restore(fleet, (ids, columns), values)  # type: ignore[arg-type]


def _slots(fleet: Fleet, device_ids: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
    """(positions of the known devices among `device_ids`, their slots)."""
    found = np.fromiter(map(fleet.index.get, device_ids, repeat(-1)), np.int64)
    at = np.flatnonzero(found >= 0)
    return at, found[at].astype(np.intp)


def _restore(fleet: Fleet, state: StateColumns, values: Iterable[ValueColumn]) -> int:
    device_ids, stored = state
    at, s = _slots(fleet, device_ids)
    columns = [np.asarray(c, np.int64).reshape(-1)[at] for c in stored] or [np.zeros(0, np.int64)] * 5
    _set_state(fleet, s, columns[0], columns[1], columns[2:])
    for name in fleet.stored_values:
        fleet.values[name][s] = np.nan
        fleet.value_ts_ms[name][s] = 0
    for name, ids, vs, ts in values:
        if name in fleet.values:
            where, slots = _slots(fleet, ids)
            _set_values(fleet, name, slots, np.asarray(vs, np.float64)[where], np.asarray(ts, np.int64)[where])
    _settle(fleet, s)
    return int(s.shape[0])


def _set_state(fleet: Fleet, s: np.ndarray, last_seen: np.ndarray, flags: np.ndarray,
               times: Sequence[np.ndarray]) -> None:
    """Saved last_seen, live flag bits and `_times` columns of slots `s`."""
    fleet.last_seen_ms[s] = last_seen
    registry = np.uint16(REGISTRY_FLAGS)
    fleet.flags[s] = (fleet.flags[s] & registry) | (flags.astype(np.uint16) & ~registry)
    for (_, column), saved in zip(_times(fleet), times):
        column[s] = saved


def _set_values(fleet: Fleet, name: str, s: np.ndarray, vs: np.ndarray, ts: np.ndarray) -> None:
    """Saved values of one metric; a metric nobody reported keeps its column unallocated."""
    known = ~np.isnan(vs)
    if name in fleet.stored_values or known.any():
        values, times = fleet.value_columns(name)
        values[s] = vs
        times[s] = np.where(known, ts, 0)


def _settle(fleet: Fleet, s: np.ndarray) -> None:
    fleet.refresh_offline_at(s)
    fleet.dirty[s] = False



def snapshot_records(fleet: Fleet) -> list[tuple[str, int, str, bytes]]:
    """The fleet's live state as `fleet_snapshot` records (`SNAPSHOT_COLUMNS`): the device ids
    (UTF-8, NUL-separated), then each live column of `_STATE` and the columns of every metric
    reported (`values.<name>`, `value_ts_ms.<name>`) as the raw bytes of its array."""
    n = fleet.size
    arrays = {name: getattr(fleet, name)[:n] for name in _STATE}
    for name in sorted(fleet.stored_values):
        arrays[f"values.{name}"] = fleet.values[name][:n]
        arrays[f"value_ts_ms.{name}"] = fleet.value_ts_ms[name][:n]
    ids = "\0".join(fleet.device_ids).encode()
    return [("device_ids", SNAPSHOT_FORMAT, "utf8", ids),
            *((name, SNAPSHOT_FORMAT, a.dtype.str, a.tobytes()) for name, a in arrays.items())]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A decoded `fleet_snapshot`: device ids, the arrays of their columns, when it was taken."""

    device_ids: list[str]
    arrays: dict[str, np.ndarray]
    taken_at: datetime


def decode_snapshot(rows: Sequence[Sequence[Any]]) -> Snapshot | None:
    """The rows of `SNAPSHOT_QUERY` as a `Snapshot`, or None when there is no usable one (none,
    another format, or columns that do not match its device ids)."""
    columns = {r[0]: (r[2], r[3]) for r in rows if r[1] == SNAPSHOT_FORMAT}
    if "device_ids" not in columns or not all(name in columns for name in _STATE) or len(columns) != len(rows):
        return None
    data = columns.pop("device_ids")[1]
    ids = data.decode().split("\0") if data else []
    try:
        arrays = {name: np.frombuffer(raw, np.dtype(dtype)) for name, (dtype, raw) in columns.items()}
    except (TypeError, ValueError):  # a dtype this numpy does not know, or a cut array
        return None
    if any(a.shape[0] != len(ids) for a in arrays.values()):
        return None
    return Snapshot(ids, arrays, min(r[4] for r in rows))


def restore_snapshot(fleet: Fleet, snapshot: Snapshot) -> int:
    """Load a snapshot into a fleet holding the registry; answer how many devices it restored.
    The rows of `device_state` written since `snapshot.taken_at` are newer (`restore_state`)."""
    ids, arrays = snapshot.device_ids, snapshot.arrays
    if ids == fleet.device_ids[: len(ids)]:  # the registry loads in the same order: no look-ups
        at = s = np.arange(len(ids))
    else:
        at, s = _slots(fleet, ids)
    with _no_gc():
        last_seen, flags, *times = (arrays[name][at] for name in _STATE)
        _set_state(fleet, s, last_seen, flags, times)
        for name in fleet.stored_values:
            fleet.values[name][s] = np.nan
            fleet.value_ts_ms[name][s] = 0
        for key, a in arrays.items():
            kind, _, name = key.partition(".")
            if kind == "values" and name in fleet.values and f"value_ts_ms.{name}" in arrays:
                _set_values(fleet, name, s, a[at], arrays[f"value_ts_ms.{name}"][at])
        _settle(fleet, s)
    return int(s.shape[0])

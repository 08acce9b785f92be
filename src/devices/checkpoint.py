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
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from itertools import repeat
from typing import Any

import numpy as np

from devices.fleet import REGISTRY_FLAGS, Fleet
from devices.fleet_query import STATUS_NAMES, decimal, status_codes

COLUMNS = ("device_id", "last_seen", "status", "battery_pct", "rsrp_dbm", "last_values", "flags")
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
    for name, column in fleet.values.items():
        v = column[slots]
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


#: `device_state` flattened by PostgreSQL into one row of six arrays, so a restart decodes plain
#: columns instead of a million datetimes and JSON documents (a million devices: about 4 s instead
#: of 10 s), and a few arrays instead of a million records. One aggregate node feeds every
#: `array_agg` the same rows in the same order.
STATE_QUERY = """
SELECT array_agg(device_id), array_agg(coalesce((extract(epoch FROM last_seen) * 1000)::bigint, 0)), array_agg(flags),
       array_agg(coalesce((last_values->>'last_ts_ms')::bigint, 0)),
       array_agg(coalesce((last_values->>'offline_since_ms')::bigint, 0)),
       array_agg(coalesce((last_values->>'muted_until_ms')::bigint, 0))
FROM device_state"""
#: Each stored value name with its devices, values and times.
VALUES_QUERY = """
SELECT v.key, array_agg(s.device_id), array_agg((v.value->>'value')::float8), array_agg((v.value->>'ts_ms')::bigint)
FROM device_state s, jsonb_each(s.last_values->'values') v GROUP BY v.key"""

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
    """`restore` from the row of `STATE_QUERY` and the rows of `VALUES_QUERY`."""
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
    fleet.last_seen_ms[s] = columns[0]
    flags = columns[1].astype(np.uint16)
    for (_, column), times in zip(_times(fleet), columns[2:]):
        column[s] = times
    for name in fleet.values:
        fleet.values[name][s] = np.nan
        fleet.value_ts_ms[name][s] = 0
    for name, ids, vs, ts in values:
        if name in fleet.values:
            where, slots = _slots(fleet, ids)
            fleet.values[name][slots] = np.asarray(vs, np.float64)[where]
            fleet.value_ts_ms[name][slots] = np.asarray(ts, np.int64)[where]
    registry = np.uint16(REGISTRY_FLAGS)
    fleet.flags[s] = (fleet.flags[s] & registry) | (flags & ~registry)
    fleet.refresh_offline_at(s)
    fleet.dirty[s] = False
    return int(s.shape[0])

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


def restore(fleet: Fleet, rows: Iterable[Sequence[Any]]) -> int:
    """Load rows (as `checkpoint_rows` makes them) of registered devices; answers how many.

    Rows of devices the fleet does not know are skipped: load the registry first. A restored
    device that was online and went silent while the service was down goes offline at the
    first sweep, with `offline_since_ms` the moment it became overdue.
    """
    with _no_gc():
        return _restore(fleet, rows)


def _restore(fleet: Fleet, rows: Iterable[Sequence[Any]]) -> int:
    slots: list[int] = []
    seen: list[int] = []
    flags: list[int] = []
    docs: list[dict[str, Any]] = []
    index = fleet.index
    for row in rows:
        s = index.get(row[0])
        if s is None:
            continue
        doc = row[5]
        slots.append(s)
        seen.append(0 if row[1] is None else datetime_to_ms(row[1]))
        flags.append(int(row[6]))
        docs.append(json.loads(doc) if isinstance(doc, (str, bytes)) else doc or {})
    s = np.array(slots, np.intp)
    fleet.last_seen_ms[s] = seen
    for key, column in _times(fleet):
        column[s] = [d.get(key, 0) for d in docs]
    found: dict[str, tuple[list[int], list[float], list[int]]] = {name: ([], [], []) for name in fleet.values}
    for i, doc in enumerate(docs):
        for name, item in doc.get("values", {}).items():
            if name in found:
                at, v, ts = found[name]
                at.append(i)
                v.append(item["value"])
                ts.append(item["ts_ms"])
    for name, (at, v, ts) in found.items():
        fleet.values[name][s] = np.nan
        fleet.value_ts_ms[name][s] = 0
        fleet.values[name][s[at]] = v
        fleet.value_ts_ms[name][s[at]] = ts
    registry = np.uint16(REGISTRY_FLAGS)
    fleet.flags[s] = (fleet.flags[s] & registry) | (np.array(flags, np.uint16) & ~registry)
    fleet.refresh_offline_at(s)
    fleet.dirty[s] = False
    return int(s.shape[0])

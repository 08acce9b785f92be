"""Reading the fleet for the API: status, filtered listings, counts and one device's live state.

Status precedence (CONTRACT §5 `status`): `alarm` if the ALARM flag is set, else `fault` if
FAULT, else `offline` if OFFLINE, else `online` if ONLINE, else `unknown` (never heard from).
A uitd panel component has no heartbeat of its own: it shows the reachability (online or
offline) of its transmission device. Region filters match unit region paths by whole
segments: `江西省/赣州市` matches `江西省/赣州市` and `江西省/赣州市/章贡区`, not `江西省/赣州市郊`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from devices.fleet import ALARM, FAULT, FLAG_NAMES, LIVENESS_FLAGS, OFFLINE, ONLINE, Fleet, Interner
from devices.kinds import Kind
from devices.scope import under

STATUS_NAMES = ("unknown", "online", "offline", "fault", "alarm")
STATUS_CODES = {name: code for code, name in enumerate(STATUS_NAMES)}

# Status by the four low flag bits, in precedence order.
assert ONLINE | OFFLINE | ALARM | FAULT == 0xF
_STATUS_BY_FLAGS = np.array(
    [
        STATUS_CODES["alarm"] if f & ALARM else
        STATUS_CODES["fault"] if f & FAULT else
        STATUS_CODES["offline"] if f & OFFLINE else
        STATUS_CODES["online"] if f & ONLINE else
        STATUS_CODES["unknown"]
        for f in range(16)
    ],
    np.int8,
)
_FIRST_CHUNK = 1 << 16


def live_flags(fleet: Fleet, index: slice | np.ndarray) -> np.ndarray:
    """Flags of these slots (a copy), uitd components showing their transmission device's reachability."""
    flags = np.array(fleet.flags[index], np.uint16)
    parent = fleet.parent[index]
    comp = np.flatnonzero(parent >= 0)
    if comp.size:
        keep = np.uint16(~LIVENESS_FLAGS & 0xFFFF)
        flags[comp] = (flags[comp] & keep) | (fleet.flags[parent[comp]] & LIVENESS_FLAGS)
    return flags


def status_codes(fleet: Fleet, slots: np.ndarray | None = None) -> np.ndarray:
    """Status code (index into `STATUS_NAMES`) per slot; all devices when `slots` is None."""
    index = slice(0, fleet.size) if slots is None else np.asarray(slots, np.intp)
    return _STATUS_BY_FLAGS[live_flags(fleet, index) & 0xF]


def status_of(fleet: Fleet, slots: Iterable[int] | np.ndarray) -> list[str]:
    """Status name per slot."""
    codes = status_codes(fleet, np.fromiter(slots, np.intp))
    return [STATUS_NAMES[c] for c in codes.tolist()]


def _status_code(status: str) -> int:
    try:
        return STATUS_CODES[status]
    except KeyError:
        raise ValueError(f"unknown status {status!r}; expected one of {', '.join(STATUS_NAMES)}") from None


def _units_in_regions(fleet: Fleet, prefixes: Sequence[str]) -> np.ndarray:
    """Per unit id, whether its region lies under one of the prefixes (plus a False entry for unit -1)."""
    region_ok = np.fromiter((any(under(name, p) for p in prefixes) for name in fleet.regions.names), bool,
                            len(fleet.regions))
    unit_region = fleet.unit_region[: len(fleet.units)]
    return np.append(np.append(region_ok, False)[unit_region], False)


def _unit_filter(
    fleet: Fleet, unit_ids: Sequence[str] | None, region_prefix: str | None, scope: Sequence[str] | None
) -> np.ndarray | None:
    """Per unit id (plus a final entry for "no unit"), whether it passes; None when nothing filters units."""
    ok: np.ndarray | None = None
    if unit_ids is not None:
        ok = np.zeros(len(fleet.units) + 1, bool)
        ids = [u for u in map(fleet.units.get, unit_ids) if u >= 0]
        ok[ids] = True
    if region_prefix and region_prefix.strip("/"):
        by_region = _units_in_regions(fleet, [region_prefix])
        ok = by_region if ok is None else ok & by_region
    if scope is not None:
        in_scope = _units_in_regions(fleet, scope)
        ok = in_scope if ok is None else ok & in_scope
    return ok


def _mask(
    fleet: Fleet, lo: int, hi: int, kind: Kind | None, status: int | None, unit_ok: np.ndarray | None
) -> np.ndarray | None:
    """Which of slots lo..hi-1 pass the filters; None when nothing filters."""
    mask: np.ndarray | None = None
    if kind is not None:
        mask = fleet.kind[lo:hi] == int(kind)
    if status is not None:
        m = _STATUS_BY_FLAGS[live_flags(fleet, slice(lo, hi)) & 0xF] == status
        mask = m if mask is None else mask & m
    if unit_ok is not None:
        m = unit_ok[fleet.unit[lo:hi]]  # unit -1 reads the final "no unit" entry
        mask = m if mask is None else mask & m
    return mask


def query(
    fleet: Fleet,
    *,
    kind: Kind | None = None,
    status: str | None = None,
    unit_ids: Sequence[str] | None = None,
    region_prefix: str | None = None,
    scope: Sequence[str] | None = None,
    after_slot: int = -1,
    limit: int = 100,
) -> np.ndarray:
    """Up to `limit` slots after `after_slot` that match every filter given, ascending (int32).

    The last slot answered is the cursor of the next page. `unit_ids` keeps devices of those
    units; `region_prefix` those whose unit lies under that region path; `scope` (a token's
    regions) those under any of these paths. Scans in growing chunks, so an early page of a
    broad filter does not read the whole fleet.
    """
    code = None if status is None else _status_code(status)
    unit_ok = _unit_filter(fleet, unit_ids, region_prefix, scope)
    found: list[np.ndarray] = []
    left, lo, chunk = limit, max(after_slot + 1, 0), _FIRST_CHUNK
    while left > 0 and lo < fleet.size:
        hi = min(fleet.size, lo + chunk)
        mask = _mask(fleet, lo, hi, kind, code, unit_ok)
        hits = (np.arange(lo, hi) if mask is None else np.flatnonzero(mask) + lo)[:left]
        found.append(hits)
        left -= hits.size
        lo, chunk = hi, chunk * 4
    return np.concatenate(found).astype(np.int32) if found else np.zeros(0, np.int32)


def _region_groups(fleet: Fleet, depth: int) -> tuple[list[str], np.ndarray]:
    """Region paths cut to `depth` segments, and per unit id its group (-1 none; final entry for unit -1)."""
    groups = Interner()

    def group(path: str) -> int:
        path = path.strip("/")
        return groups.intern("/".join(path.split("/")[:depth])) if path else -1

    region_group = np.fromiter(map(group, fleet.regions.names), np.int32, len(fleet.regions))
    unit_region = fleet.unit_region[: len(fleet.units)]
    return groups.names, np.append(np.append(region_group, -1)[unit_region], -1)


def counts(
    fleet: Fleet,
    *,
    kind: Kind | None = None,
    status: str | None = None,
    unit_ids: Sequence[str] | None = None,
    region_prefix: str | None = None,
    scope: Sequence[str] | None = None,
    region_depth: int = 1,
) -> dict[str, Any]:
    """Counts of the devices passing the filters (as in `query`).

    `{"total", "by_status": {status: n}, "by_kind": {kind: n}, "by_region": {path: n},
    "no_region": n, "offline": n}`: regions are unit region paths cut to `region_depth`
    segments (only non-zero ones listed); `offline` counts every unreachable device, also those
    whose status shows `alarm` or `fault` first.
    """
    n = fleet.size
    mask = _mask(fleet, 0, n, kind, None if status is None else _status_code(status),
                 _unit_filter(fleet, unit_ids, region_prefix, scope))
    index: slice | np.ndarray = slice(0, n) if mask is None else np.flatnonzero(mask)
    flags = live_flags(fleet, index)
    by_status = np.bincount(_STATUS_BY_FLAGS[flags & 0xF], minlength=len(STATUS_NAMES))
    by_kind = np.bincount(fleet.kind[index], minlength=max(Kind) + 1)
    names, unit_group = _region_groups(fleet, region_depth)
    group = unit_group[fleet.unit[index]]
    by_group = np.bincount(group[group >= 0], minlength=len(names))
    return {
        "total": int(flags.shape[0]),
        "by_status": dict(zip(STATUS_NAMES, by_status.tolist())),
        "by_kind": {k.name: int(by_kind[k]) for k in Kind},
        "by_region": {names[g]: int(c) for g, c in enumerate(by_group.tolist()) if c},
        "no_region": int((group < 0).sum()),
        "offline": int(((flags & OFFLINE) != 0).sum()),
    }


def decimal(x: np.ndarray) -> np.ndarray:
    """float32 values as the float64 of their shortest decimal of 7 significant digits when that
    reads back to the same float32 (4.2, not 4.199999809265137), else exactly."""
    exact = x.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = 10.0 ** (6 - np.floor(np.log10(np.abs(exact))))
        short = np.round(exact * scale) / scale
    ok = np.isfinite(short) & (short.astype(np.float32) == x)
    return np.where(ok, short, exact)


def snapshot(fleet: Fleet, slot: int) -> dict[str, Any]:
    """Live state of one device, JSON-ready; times are epoch ms, None when absent."""
    if not 0 <= slot < fleet.size:
        raise IndexError(f"slot {slot} is not a device (fleet size {fleet.size})")
    flags = int(live_flags(fleet, np.array([slot]))[0])
    unit = int(fleet.unit[slot])
    region = int(fleet.unit_region[unit]) if unit >= 0 else -1
    cell, parent = int(fleet.cell[slot]), int(fleet.parent[slot])
    values = {
        name: {"value": float(decimal(col[slot: slot + 1])[0]), "ts_ms": int(fleet.value_ts_ms[name][slot])}
        for name, col in fleet.values.items()
        if not np.isnan(col[slot])
    }

    def ms(column: np.ndarray) -> int | None:
        return int(column[slot]) or None

    return {
        "device_id": fleet.device_ids[slot],
        "kind": Kind(int(fleet.kind[slot])).name,
        "status": STATUS_NAMES[_STATUS_BY_FLAGS[flags & 0xF]],
        "last_seen_ms": ms(fleet.last_seen_ms),
        "last_ts_ms": ms(fleet.last_ts_ms),
        "offline_since_ms": ms(fleet.offline_since_ms),
        "battery_pct": values.get("battery_pct", {}).get("value"),
        "rsrp_dbm": values.get("rsrp_dbm", {}).get("value"),
        "values": values,
        "flags": [name for bit, name in FLAG_NAMES.items() if flags & bit],
        "maintenance": bool(fleet.in_maintenance(np.array([slot]))[0]),
        "muted_until_ms": ms(fleet.mute_until_ms),
        "unit_id": fleet.units.names[unit] if unit >= 0 else None,
        "region": fleet.regions.names[region] if region >= 0 else None,
        "cell_id": fleet.cells.names[cell] if cell >= 0 else None,
        "parent_id": fleet.device_ids[parent] if parent >= 0 else None,
    }

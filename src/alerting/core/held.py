"""Conditions that must hold for a while (CONTRACT §10): CO held high, a charger port above its
rated current.

A condition holds for a device from the first of an unbroken run of its readings that meet it;
a reading that does not meet it ends the run, a reading without the value leaves it be. Runs
continue across batches through `Fleet.held_since` (written here, as the core runs before
`Fleet.apply`); a batch's readings of one device are taken in device-time order, the later row on
equal times.
"""

from __future__ import annotations

import numpy as np

from alerting.core.rules import Readings
from alerting.core.timeline import run_ends, run_starts
from devices.fleet import NOT_HELD


def held_since(r: Readings, condition: str, rows: np.ndarray, meets: np.ndarray) -> np.ndarray:
    """For `rows` (distinct batch rows whose value is known) and whether each meets `condition`:
    since when the condition has held at each row (NOT_HELD where it does not). Records each
    device's state after its last row in the fleet."""
    if rows.shape[0] == 0:
        return np.zeros(0, np.int64)
    order = np.lexsort((rows, r.ts[rows], r.slot[rows]))
    s, t, m = r.slot[rows[order]], r.ts[rows[order]], meets[order]
    first = run_starts(s)
    idx = np.arange(s.shape[0])
    opens = m.copy()
    opens[1:] &= ~m[:-1] | first[1:]
    run_head = np.maximum.accumulate(np.where(opens, idx, 0))
    before = r.fleet.held_since(condition)[s[run_head]]
    carried = first[run_head] & (before != NOT_HELD)  # the run goes on from earlier batches
    since = np.where(m, np.where(carried, before, t[run_head]), NOT_HELD)
    last = run_ends(s)
    r.fleet.set_held_since(condition, s[last], since[last])
    out = np.empty_like(since)
    out[order] = since
    return out


def held_long(r: Readings, condition: str, rows: np.ndarray, meets: np.ndarray, hold_ms: int) -> np.ndarray:
    """Whether each of `rows` meets `condition` and it has held at least `hold_ms` (device time)."""
    since = held_since(r, condition, rows, meets)
    return (since != NOT_HELD) & (r.ts[rows] - since >= hold_ms)

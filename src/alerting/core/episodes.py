"""Per-detector sequences: alarm episodes (transients, flapping), mutes and low-battery transitions.

A batch's readings of one detector are taken in device-time order (the later row on equal
times), continuing the state left by earlier batches. Everything is computed for all
detectors at once over the few rows concerned (alarm raises and clears, battery changes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alerting.core.timeline import NO_TIME, Timeline, members, run_ends, run_starts
from devices.fleet import FLAPPING

_NO_SLOTS = np.zeros(0, np.int32)


def _group_offsets(first: np.ndarray) -> np.ndarray:
    """For a mask of group starts, each element's position within its group."""
    idx = np.arange(first.shape[0])
    return idx - np.maximum.accumulate(np.where(first, idx, 0))


def _before_in_group(flag: np.ndarray, first: np.ndarray) -> np.ndarray:
    """How many elements earlier in the same group have `flag`."""
    cum = np.cumsum(flag) - flag
    idx = np.arange(flag.shape[0])
    start = np.maximum.accumulate(np.where(first, idx, 0))
    return cum - cum[start] if flag.shape[0] else cum


@dataclass(slots=True)
class DetectorState:
    """Per slot: when the open alarm episode started (NO_TIME when none), the device times of
    the last `flapping_cycles - 1` completed alarm/clear cycles (newest first) and of the
    latest `mute` event (NO_TIME when none)."""

    started: np.ndarray  # int64 [capacity]
    cycles: np.ndarray  # int64 [capacity, flapping_cycles - 1]
    muted: np.ndarray  # int64 [capacity]

    @classmethod
    def empty(cls, capacity: int, history: int) -> DetectorState:
        return cls(np.full(capacity, NO_TIME, np.int64), np.full((capacity, history), NO_TIME, np.int64),
                   np.full(capacity, NO_TIME, np.int64))

    def grow(self, capacity: int) -> None:
        n = self.started.shape[0]
        if capacity > n:
            more = DetectorState.empty(max(capacity, 2 * n), self.cycles.shape[1])
            more.started[:n], more.cycles[:n], more.muted[:n] = self.started, self.cycles, self.muted
            self.started, self.cycles, self.muted = more.started, more.cycles, more.muted


@dataclass(slots=True)
class Episodes:
    """Aligned with the `raises` / `clears` rows given to `episodes`."""

    flapping: np.ndarray  # per raise: its detector is marked flapping when it fires
    transient: np.ndarray  # per clear: the episode it ends lasted at most `transient_ms`
    started: np.ndarray  # per clear: start of the episode it ends (NO_TIME: none open)
    newly_flapping: np.ndarray  # slots this batch marked flapping


def episodes(
    raises: np.ndarray,
    clears: np.ndarray,
    slot: np.ndarray,
    ts: np.ndarray,
    flags: np.ndarray,
    state: DetectorState,
    *,
    transient_ms: int,
    flapping_ms: int,
) -> Episodes:
    """Follow alarm episodes through a batch and update `state`.

    `raises`: rows with an unsuppressed alarm; `clears`: `alarm_clear` rows; `flags`: the
    fleet's flags (FLAPPING: already marked). An episode starts at the first raise after a
    clear (or at the start kept in `state`) and ends at the next clear: a completed cycle. A
    clear with no open episode ends nothing. A detector flaps at the cycle that makes
    `flapping_cycles` cycles within `flapping_ms` (newest minus oldest end); its later raises
    carry the mark.
    """
    rows = np.concatenate([raises, clears])
    is_clear = np.concatenate([np.zeros(raises.shape[0], bool), np.ones(clears.shape[0], bool)])
    order = np.lexsort((rows, ts[rows], slot[rows]))
    s, t, c = slot[rows[order]], ts[rows[order]], is_clear[order]
    first = run_starts(s)

    # segments: runs of raises closed by at most one clear
    seg_first = first.copy()
    seg_first[1:] |= c[:-1]
    seg = np.cumsum(seg_first) - 1
    heads = np.flatnonzero(seg_first)
    kept = state.started[s[heads]]
    seg_start = np.where(first[heads] & (kept != NO_TIME), kept, np.where(c[heads], NO_TIME, t[heads]))
    start = seg_start[seg]

    at_clear = np.flatnonzero(c)
    opened = start[at_clear] != NO_TIME
    lasted = t[at_clear] - start[at_clear]
    quick = opened & (lasted >= 0) & (lasted <= transient_ms)

    # flapping: compare each completed cycle with the one `history` cycles earlier
    marked = (flags[s] & FLAPPING) != 0
    newly_flapping = _NO_SLOTS
    cyc = at_clear[opened]
    if cyc.size:
        flaps = _completed_cycles(state, s[cyc], t[cyc], flapping_ms)
        if flaps.any():
            flap_at = np.zeros(s.shape[0], bool)
            flap_at[cyc[flaps]] = True
            marked |= _before_in_group(flap_at, first) > 0
            newly_flapping = np.unique(s[cyc[flaps]]).astype(np.int32)

    # state after the batch
    last = run_ends(s)
    state.started[s[last]] = np.where(c[last], NO_TIME, start[last])

    flapping = np.empty(raises.shape[0], bool)
    transient = np.empty(clears.shape[0], bool)
    started = np.empty(clears.shape[0], np.int64)
    raise_pos = np.flatnonzero(~c)
    flapping[order[raise_pos]] = marked[raise_pos]
    transient[order[at_clear] - raises.shape[0]] = quick
    started[order[at_clear] - raises.shape[0]] = start[at_clear]
    return Episodes(flapping, transient, started, newly_flapping)


def _completed_cycles(state: DetectorState, cyc_s: np.ndarray, cyc_t: np.ndarray, flapping_ms: int) -> np.ndarray:
    """Completed cycles, by detector in time order (slots `cyc_s`, end times `cyc_t`): whether each
    makes its detector flap. Remembers each detector's newest cycles in `state`."""
    history = state.cycles.shape[1]
    j = _group_offsets(run_starts(cyc_s))
    k = np.arange(cyc_s.shape[0])
    older = np.where(
        j >= history,
        cyc_t[np.maximum(k - history, 0)],
        state.cycles[cyc_s, np.clip(history - 1 - j, 0, history - 1)],
    )
    ends = np.flatnonzero(run_ends(cyc_s))
    size = np.diff(np.concatenate([[-1], ends]))
    old = state.cycles[cyc_s[ends]]
    new = np.empty_like(old)
    each = np.arange(ends.size)
    for n in range(history):
        new[:, n] = np.where(n < size, cyc_t[np.maximum(ends - n, 0)], old[each, np.clip(n - size, 0, history - 1)])
    state.cycles[cyc_s[ends]] = new
    return (older != NO_TIME) & (cyc_t - older <= flapping_ms)


def muted_by_event(rows: np.ndarray, slot: np.ndarray, ts: np.ndarray, mutes: np.ndarray, state: DetectorState,
                   mute_ms: int) -> np.ndarray:
    """Whether each of `rows` falls within `mute_ms` after its detector's latest `mute` event at
    or before it (of this batch, rows `mutes`, or remembered in `state`); remember the batch's."""
    t = ts[rows]
    last = state.muted[slot[rows]]
    last = np.where(last <= t, last, NO_TIME)
    if mutes.size:
        line = Timeline(slot[mutes], ts[mutes])
        k = line.last_at_or_before(slot[rows], t)
        last = np.maximum(last, np.where(k >= 0, line.ts[np.maximum(k, 0)], NO_TIME))
        np.maximum.at(state.muted, slot[mutes], ts[mutes])
    return (last != NO_TIME) & (t - last < mute_ms)


def battery_changes(
    slot: np.ndarray, ts: np.ndarray, low_event: np.ndarray, pct: np.ndarray, floor: np.ndarray,
    late: np.ndarray, was_low: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows where a detector's battery becomes low (a `battery_pct` below its floor) and rows
    where it recovers (at or above it), as (raise rows, clear rows). All arguments are per row.

    Follows `devices.fleet`'s LOW_BATTERY flag (`was_low`: the row's device's flag before the
    batch): a `low_battery` event sets it (and raises by itself, so it is not listed here), a
    reading below the floor sets it, one at or above clears it, and rows older than the
    device's state (`late`) change nothing.
    """
    known = ~late & (low_event | ~np.isnan(pct))
    low = low_event | (pct < floor)
    # only detectors with a row that disagrees with their state before the batch can change
    moving = np.flatnonzero(known & (low != was_low))
    if moving.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rows = np.flatnonzero(known & members(slot, slot[moving]))
    rows = rows[np.lexsort((rows, ts[rows], slot[rows]))]
    s, now_low = slot[rows], low[rows]
    before = np.empty_like(now_low)
    before[1:] = now_low[:-1]
    first = run_starts(s)
    before[first] = was_low[rows[first]]
    raised = now_low & ~before & ~low_event[rows]
    cleared = ~now_low & before
    return rows[raised], rows[cleared]

"""Unit-level 秒响应 rules over recent alarms of many detectors (CONTRACT §8).

- `unit.multi_detector`: two or more distinct detectors of one unit in fire-class alarm
  (smoke, heat, gas, panel fire) within 120 s of each other;
- `unit.electrical_then_smoke`: an electrical alarm and a smoke alarm in one unit within
  300 s of each other (either order; the contract names no order).

Only unsuppressed alarms count. A batch's alarms are compared with each other and with the
`AlarmLog` of earlier batches' alarms (kept for `correlation_memory_s` of service time, so a
report delayed in a gateway still meets its partners); times are device times.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from alerting.core.timeline import Timeline, covered, members, run_ends

FIRE, ELECTRICAL, SMOKE = 1, 2, 4  # entry class bits


@dataclass(slots=True)
class Entries:
    """Alarms of detectors that belong to a unit; `row` is the batch row, -1 for remembered ones."""

    slot: np.ndarray  # int32
    unit: np.ndarray  # int32
    ts: np.ndarray  # int64
    cls: np.ndarray  # uint8 class bits
    type: np.ndarray  # int8 AlarmType of the entry
    event: np.ndarray  # int8 Event
    row: np.ndarray  # int64
    seen: np.ndarray  # int64 service time when it was logged

    @classmethod
    def empty(cls) -> Entries:
        return cls(*(np.zeros(0, dt) for dt in _DTYPES))

    def __len__(self) -> int:
        return int(self.slot.shape[0])

    def take(self, index: np.ndarray) -> Entries:
        return Entries(*(getattr(self, f)[index] for f in _FIELDS))

    def __add__(self, other: Entries) -> Entries:
        return Entries(*(np.concatenate([getattr(self, f), getattr(other, f)]) for f in _FIELDS))


_FIELDS = ("slot", "unit", "ts", "cls", "type", "event", "row", "seen")
_DTYPES = (np.int32, np.int32, np.int64, np.uint8, np.int8, np.int8, np.int64, np.int64)


class AlarmLog:
    """Earlier batches' unit alarms, forgotten `memory_ms` (service time) after they were logged."""

    def __init__(self, memory_ms: int) -> None:
        self.memory_ms = memory_ms
        self.entries = Entries.empty()

    def recall(self, now_ms: int, units: np.ndarray) -> Entries:
        """Forget what is older than the memory; answer what is remembered of these units."""
        keep = self.entries.seen >= now_ms - self.memory_ms
        if not keep.all():
            self.entries = self.entries.take(keep)
        return self.entries.take(members(self.entries.unit, units))

    def remember(self, batch: Entries) -> None:
        if len(batch):
            self.entries = self.entries + replace(batch, row=np.full(len(batch), -1, np.int64))


@dataclass(slots=True)
class UnitFire:
    """One unit's fire: `rule` names the rule (multi-detector wins), `ts` the newest triggering
    batch alarm, `evidence` indexes the entries behind it (the newest per detector)."""

    unit: int
    rule: str
    ts: int
    evidence: np.ndarray


#: Up to this many (query, entry) pairs, window searches compare every pair instead of sorting.
DENSE_PAIRS_MAX = 4096


def _within(line: Timeline, group: np.ndarray, ts: np.ndarray, window_ms: int) -> tuple[np.ndarray, np.ndarray]:
    return line.between(group, ts - window_ms, ts + window_ms)


def _partners(e: Entries, q: np.ndarray, p: np.ndarray, window_ms: int, *,
              other_detector: bool) -> tuple[np.ndarray, np.ndarray]:
    """For entries `q` and `p` (indexes): a mask of the `q` with a `p` of their unit within the
    window (of another detector when `other_detector`), and a mask of the `p` within the window
    of one of those."""
    if q.shape[0] * p.shape[0] > DENSE_PAIRS_MAX:
        return _partners_sorted(e, q, p, window_ms, other_detector=other_detector)
    ts = e.ts[p]
    near = ((e.unit[q][:, None] == e.unit[p]) & (ts >= (e.ts[q] - window_ms)[:, None])
            & (ts <= (e.ts[q] + window_ms)[:, None]))
    mates = near & (e.slot[q][:, None] != e.slot[p]) if other_detector else near
    hit = mates.any(axis=1)
    return hit, near[hit].any(axis=0)


def _partners_sorted(e: Entries, q: np.ndarray, p: np.ndarray, window_ms: int, *,
                     other_detector: bool) -> tuple[np.ndarray, np.ndarray]:
    """`_partners` by window queries over sorted entries, for many pairs."""
    by_unit = Timeline(e.unit[p], e.ts[p])
    lo, hi = _within(by_unit, e.unit[q], e.ts[q], window_ms)
    if other_detector:
        by_detector = Timeline((e.unit[p].astype(np.int64) << 32) | e.slot[p], e.ts[p])
        lo_own, hi_own = _within(by_detector, (e.unit[q].astype(np.int64) << 32) | e.slot[q], e.ts[q], window_ms)
        hit = (hi - lo) > (hi_own - lo_own)
    else:
        hit = hi > lo
    involved = np.zeros(p.shape[0], bool)
    involved[by_unit.order[covered(len(by_unit), lo[hit], hi[hit])]] = True
    return hit, involved


def multi_detector(e: Entries, window_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """Batch fire-class entries with another detector's fire-class entry of their unit within the
    window, and every entry within the window of one of those: (triggers, involved) indexes."""
    fire = np.flatnonzero((e.cls & FIRE) != 0)
    q = fire[e.row[fire] >= 0]
    if q.size == 0:
        return q, q
    hit, involved = _partners(e, q, fire, window_ms, other_detector=True)
    return q[hit], fire[involved]


def electrical_smoke(e: Entries, window_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """Batch electrical (smoke) entries with a smoke (electrical) entry of their unit within the
    window, and those partners: (triggers, involved) indexes."""
    triggers, involved = [], []
    for mine, theirs in ((ELECTRICAL, SMOKE), (SMOKE, ELECTRICAL)):
        q = np.flatnonzero(((e.cls & mine) != 0) & (e.row >= 0))
        other = np.flatnonzero((e.cls & theirs) != 0)
        if q.size == 0 or other.size == 0:
            continue
        hit, near = _partners(e, q, other, window_ms, other_detector=False)
        triggers.append(q[hit])
        involved.append(other[near])
    if not triggers:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    t = np.concatenate(triggers)
    return t, np.concatenate([t, *involved])


def unit_fires(e: Entries, multi_window_ms: int, electrical_window_ms: int) -> list[UnitFire]:
    """The units whose fire is confirmed by this batch's alarms."""
    multi, multi_involved = multi_detector(e, multi_window_ms)
    elec, elec_involved = electrical_smoke(e, electrical_window_ms)
    if multi.size == 0 and elec.size == 0:
        return []
    triggers = np.concatenate([multi, elec])
    by_multi = np.concatenate([np.ones(multi.size, bool), np.zeros(elec.size, bool)])
    involved = np.unique(np.concatenate([multi_involved, elec_involved]))
    # newest entry per (unit, detector); its time, then the later entry on ties
    order = np.lexsort((involved, e.ts[involved], e.slot[involved], e.unit[involved]))
    involved = involved[order]
    newest = involved[run_ends((e.unit[involved].astype(np.int64) << 32) | e.slot[involved])]

    t_order = np.lexsort((e.ts[triggers], e.unit[triggers]))
    triggers, by_multi = triggers[t_order], by_multi[t_order]
    units = e.unit[triggers]
    ends = np.flatnonzero(run_ends(units))
    starts = np.concatenate([[0], ends[:-1] + 1])
    any_multi = np.logical_or.reduceat(by_multi, starts)
    newest_unit = e.unit[newest]
    lo = np.searchsorted(newest_unit, units[ends], "left")
    hi = np.searchsorted(newest_unit, units[ends], "right")
    return [
        UnitFire(int(units[end]), "unit.multi_detector" if is_multi else "unit.electrical_then_smoke",
                 int(e.ts[triggers[end]]), newest[a:b])
        for end, is_multi, a, b in zip(ends, any_multi, lo, hi)
    ]

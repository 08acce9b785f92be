"""Device clocks ahead of the service (NB-IoT devices with a wrong clock are common).

A device time more than the tolerance after the receive time cannot be true: left as it is, one
such report would put its detector's alarm state in the future, where no genuine report ever
reaches it. Every reading passes `check_clocks` once, whatever its transport (the pipeline calls
it before dedupe, storage and alerting): a reading too far ahead gets the receive time as its
`ts_ms`, is marked untimed (its device time is no part of its identity, as for a report without
one; CONTRACT §2) and keeps what the device said in `extra["clock_skew"]`. Its device gets a live
mark (`Fleet.clock_skew`: since when, and the latest offset), lifted by its next report whose time
is within the tolerance.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter, sub

from devices.fleet import ClockSkewMark
from devices.reading import Reading

#: The key of `Reading.extra` that marks a clamped reading: {"device_ts_ms": ..., "offset_s": ...}.
CLOCK_SKEW = "clock_skew"
DEFAULT_TOLERANCE_S = 300.0
_TS, _RECEIVED = attrgetter("ts_ms"), attrgetter("received_ms")


def check_clocks(readings: Sequence[Reading], tolerance_ms: int, marks: dict[str, ClockSkewMark]) -> int:
    """Clamp each reading whose device time is more than `tolerance_ms` after its receive time
    (in place) and update the devices' live `marks`; answer how many were clamped."""
    if not marks and max(map(sub, map(_TS, readings), map(_RECEIVED, readings)), default=0) <= tolerance_ms:
        return 0  # the usual batch: every clock plausible, no device marked
    clamped = 0
    for r in readings:
        offset_ms = r.ts_ms - r.received_ms
        if not r.untimed and offset_ms > tolerance_ms:
            r.extra = {**r.extra, CLOCK_SKEW: {"device_ts_ms": r.ts_ms, "offset_s": offset_ms / 1000}}
            r.ts_ms, r.untimed = r.received_ms, True
            mark = marks.get(r.device_id)
            marks[r.device_id] = ClockSkewMark(r.received_ms if mark is None else mark.since_ms, offset_ms / 1000)
            clamped += 1
        elif not r.untimed and r.device_id in marks:
            del marks[r.device_id]  # a plausible device time again: the clock was set
    return clamped

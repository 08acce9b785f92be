"""Fire water and hydrants (CONTRACT §8, §10): `water` devices, and panel components (uitd)
relaying GB/T 26875 analog values, which go through the level rules but never the pressure drop
(their 0.1 MPa step is no measure of a fall) nor a water device's `alarm`.

| type | raised by (major, verify unless said) |
|---|---|
| water_pressure_low | `pressure_mpa` < `pressure_low_mpa`, or a water device's `alarm` |
| water_pressure_high | `pressure_mpa` > `pressure_high_mpa` (minor; off until set) |
| water_pressure_drop | a fall >= `pressure_drop_mpa` (and >= twice the resolution) since the device's |
|   | previous sample, at most 60 s earlier |
| water_level_low | `level_m` < `level_low_m` (off until set) |
| hydrant_open | a `hydrant_open` event, or `flow_m3h` > `flow_open_m3h` on a device marked HYDRANT |
| hydrant_damaged | an `impact` event, or `tilt_deg` >= `tilt_max_deg` |
"""

from __future__ import annotations

import numpy as np

from alerting.core.rules import RULE, Hits, Readings
from alerting.core.timeline import NO_TIME, members, run_ends
from devices.catalogue import AlarmType, Event, Kind
from devices.fleet import HYDRANT

A = AlarmType
_WATER, _UITD = int(Kind.water), int(Kind.uitd)
#: Slack of a pressure drop: earlier samples come back from the fleet's float32 columns.
DROP_SLACK_MPA = 1e-6
_EVENTS = np.zeros(256, bool)
_EVENTS[[Event.hydrant_open, Event.impact]] = True


def water(r: Readings) -> list[Hits]:
    out: list[Hits] = []
    own = r.rows(_WATER)
    if own.size:
        out += _levels(r, own, panel_rows=False)
        out += _drop(r, own)
    panel = r.rows(_UITD)
    if panel.size and (r.has_values("pressure_mpa", panel) or r.has_values("level_m", panel)):
        panel = panel[~(np.isnan(r.value("pressure_mpa")[panel]) & np.isnan(r.value("level_m")[panel]))]
        out += _levels(r, panel, panel_rows=True)
    if _EVENTS[r.attention_event.astype(np.uint8)].any():
        out.append(Hits.of(r.events(int(Event.hydrant_open), _WATER), A.hydrant_open, rule=RULE["water.hydrant_open"]))
        out.append(Hits.of(r.events(int(Event.impact), _WATER), A.hydrant_damaged, rule=RULE["water.impact"]))
    return out


def _levels(r: Readings, rows: np.ndarray, *, panel_rows: bool) -> list[Hits]:
    if rows.size == 0:
        return []
    pressure = r.value("pressure_mpa")[rows]
    low = pressure < r.limit("pressure_low_mpa", rows)
    parts = [(low, A.water_pressure_low, RULE["water.pressure_low"])]
    if _on(r, "pressure_high_mpa"):
        parts.append((pressure > r.limit("pressure_high_mpa", rows), A.water_pressure_high,
                      RULE["water.pressure_high"]))
    if _on(r, "level_low_m"):
        parts.append((r.value("level_m")[rows] < r.limit("level_low_m", rows), A.water_level_low,
                      RULE["water.level_low"]))
    if not panel_rows:
        parts += [
            (r.alarmish[rows] & ~low, A.water_pressure_low, RULE["water.alarm"]),
            (r.value("flow_m3h")[rows] > r.limit("flow_open_m3h", rows), A.hydrant_open, RULE["water.hydrant_flow"]),
            (r.value("tilt_deg")[rows] >= r.limit("tilt_max_deg", rows), A.hydrant_damaged, RULE["water.hydrant_tilt"]),
        ]
    out = []
    for mask, type_, rule in parts:
        if mask.any():
            if rule == RULE["water.hydrant_flow"]:  # on a registered hydrant only
                mask = mask & ((r.fleet.flags[r.slot[rows]] & HYDRANT) != 0)
            out.append(Hits.of(rows[mask], type_, rule=rule))
    return out


def _on(r: Readings, name: str) -> bool:
    """Whether a threshold's rule can fire: it has a default, or some device sets it."""
    return not np.isnan(r.defaults[name]) or r.fleet.overrides[name] > 0


def _drop(r: Readings, rows: np.ndarray) -> list[Hits]:
    """water_pressure_drop of water devices' rows (never panel components')."""
    pressure = r.value("pressure_mpa")
    rows = rows[~np.isnan(pressure[rows])]
    c = r.config
    least = np.maximum(r.limit("pressure_drop_mpa", rows), 2 * c.pressure_resolution_mpa)
    # a fall needs an earlier sample that high: at most the fleet's or the highest of the batch's
    slot = r.slot[rows]
    top = r.fleet.values["pressure_mpa"][slot].astype(np.float64)
    others = r.attention[~np.isnan(pressure[r.attention])]  # an alarm_clear, a fault, ... with a value
    sampled = np.concatenate([rows, others])
    keys = np.sort(r.slot[sampled])
    several = keys[1:][keys[1:] == keys[:-1]]  # devices with more than one sample in the batch
    if several.size:
        shared = sampled[members(r.slot[sampled], several)]
        order = np.lexsort((pressure[shared], r.slot[shared]))
        last = run_ends(r.slot[shared][order])
        devices, highest = r.slot[shared][order][last], pressure[shared][order][last]
        mine = np.minimum(np.searchsorted(devices, slot), devices.shape[0] - 1)
        top = np.fmax(top, np.where(devices[mine] == slot, highest[mine], np.nan))
    maybe = top - pressure[rows] + DROP_SLACK_MPA >= least
    if not maybe.any():
        return []
    rows, least = rows[maybe], (least[maybe] if np.ndim(least) else least)
    t = r.ts[rows]
    prev_ts, prev = r.sample_at_or_before("pressure_mpa", rows, t - 1)
    near = (prev_ts != NO_TIME) & (t - prev_ts <= int(c.pressure_drop_window_s * 1000))
    fell = near & (prev - r.value("pressure_mpa")[rows] + DROP_SLACK_MPA >= least)
    return [Hits.of(rows[fell], A.water_pressure_drop, rule=RULE["water.pressure_drop"])]

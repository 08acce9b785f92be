"""Carbon monoxide (CONTRACT §10): a CO detector's alarms are `co_high`, never `gas_leak`.

- `co_ppm` >= `co_critical_ppm` (300) in any reading: critical, immediate (`co.critical`);
- `co_ppm` held >= `co_major_ppm` (50) for 60 min (`co.held`) or >= 100 for 10 min
  (`co.held_short`): major, verify;
- a CO detector's `alarm` (`rules.is_co`): major, verify (`co.alarm`).
One hit per reading, the first of these that applies.
"""

from __future__ import annotations

import numpy as np

from alerting.core.held import held_long
from alerting.core.rules import RULE, Hits, Readings, is_co
from devices.catalogue import AlarmType, Kind, Response, Severity

_GAS = int(Kind.gas)


def co_high(r: Readings) -> list[Hits]:
    if not r.co_possible:
        return []
    rows = r.rows(_GAS)
    ppm = r.value("co_ppm")[rows]
    known = ~np.isnan(ppm)
    alarm = r.alarmish[rows]
    if not known.any():  # no CO values in the batch: only alarms of CO detectors
        rows = rows[alarm]
        return [Hits.of(rows[is_co(r, rows)], AlarmType.co_high, rule=RULE["co.alarm"])]
    c = r.config
    critical = ppm >= r.threshold("co_critical_ppm", rows)
    held = np.zeros(rows.shape[0], bool)
    short = np.zeros(rows.shape[0], bool)
    k = np.flatnonzero(known)
    if k.size:
        held[k] = held_long(r, "co_major", rows[k], ppm[k] >= r.threshold("co_major_ppm", rows[k]),
                            int(c.co_major_hold_s * 1000))
        short[k] = held_long(r, "co_short", rows[k], ppm[k] >= c.co_short_ppm, int(c.co_short_hold_s * 1000))
    if alarm.any():
        alarm[alarm] = is_co(r, rows[alarm])
    fire = np.flatnonzero(critical | held | short | alarm)
    if fire.size == 0:
        return []
    critical, held, short = critical[fire], held[fire], short[fire]
    rule = np.where(critical, RULE["co.critical"], np.where(
        held, RULE["co.held"], np.where(short, RULE["co.held_short"], RULE["co.alarm"])))
    return [Hits.of(rows[fire], AlarmType.co_high, np.where(critical, int(Severity.critical), int(Severity.major)),
                    np.where(critical, int(Response.immediate), int(Response.verify)), rule)]

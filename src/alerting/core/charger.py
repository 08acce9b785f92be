"""Charging piles (CONTRACT §10), electrical class; major, verify unless said.

- charger_overheat: the hottest port's `port_temp_c` >= `port_temp_c` (70), or rising >=
  `port_rise_c_per_min` (10 °C/min), or an `overtemp` event. The hit's evidence names the port
  (`port`, from 1: the hottest one's, or the event's), which linkage cuts.
- charger_overcurrent: the highest `port_current_a` above `port_rated_a` in the device's readings
  for at least 30 s (`held`), or an `overcurrent` event.
- charger_leakage: `residual_current_ma` >= `leakage_warn_ma` (15); critical at >=
  `leakage_critical_ma` (30) or on a `leakage` event.
- a charger's `alarm` that none of these explains: charger_overheat (`charger.alarm`).
"""

from __future__ import annotations

import numpy as np

from alerting.core.held import held_long
from alerting.core.rules import RULE, Hits, Readings
from devices.catalogue import AlarmType, Event, Kind, Severity

A = AlarmType
_CHARGER = int(Kind.charger)
_MAJOR, _CRITICAL = int(Severity.major), int(Severity.critical)


def charger(r: Readings) -> list[Hits]:
    if not r.has_kind(_CHARGER):
        return []
    rows = r.rows(_CHARGER)
    events = [
        Hits.of(r.events(int(Event.overtemp), _CHARGER), A.charger_overheat, rule=RULE["charger.overtemp"]),
        Hits.of(r.events(int(Event.overcurrent), _CHARGER), A.charger_overcurrent, rule=RULE["charger.overcurrent"]),
        Hits.of(r.events(int(Event.leakage), _CHARGER), A.charger_leakage, _CRITICAL, rule=RULE["charger.leakage"]),
    ]
    if rows.size == 0:
        return events
    temp = r.value("port_temp_c")[rows]
    hot = temp >= r.threshold("port_temp_c", rows)
    rising = np.zeros(rows.shape[0], bool)
    ask = np.flatnonzero(~hot & ~np.isnan(temp))
    if ask.size:
        rising[ask] = r.rise_per_min("port_temp_c", rows[ask]) >= r.threshold("port_rise_c_per_min", rows[ask])
    current = r.value("port_current_a")[rows]
    over = np.zeros(rows.shape[0], bool)
    known = np.flatnonzero(~np.isnan(current))
    if known.size:
        over[known] = held_long(r, "port_current", rows[known],
                                current[known] > r.threshold("port_rated_a", rows[known]),
                                int(r.config.overcurrent_hold_s * 1000))
    leak = r.value("residual_current_ma")[rows]
    critical_at, warn_at = r.thresholds(("leakage_critical_ma", "leakage_warn_ma"), rows)
    critical = leak >= critical_at
    warn = critical | (leak >= warn_at)  # a device may set its critical limit below its warning one
    unexplained = r.alarmish[rows] & ~(hot | rising | over | warn)
    overheat = np.flatnonzero(hot | rising | unexplained)
    leaking = np.flatnonzero(warn)
    return [*events, Hits.concat([
        Hits.of(rows[overheat], A.charger_overheat, rule=np.where(
            hot[overheat], RULE["charger.port_temp"],
            np.where(rising[overheat], RULE["charger.port_rise"], RULE["charger.alarm"]))),
        Hits.of(rows[np.flatnonzero(over)], A.charger_overcurrent, rule=RULE["charger.current"]),
        Hits.of(rows[leaking], A.charger_leakage, np.where(critical[leaking], _CRITICAL, _MAJOR),
                rule=np.where(critical[leaking], RULE["charger.leakage_critical"], RULE["charger.leakage_warn"])),
    ])]

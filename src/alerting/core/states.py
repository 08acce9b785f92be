"""Alarms of reported device states (CONTRACT §10), raised and cleared by events; like faults,
only maintenance suppresses them.

- power_fault (minor, verify): `power_fail` of a uitd or panel component, or of a kind that
  reports `mains_ok`; major when the reading says main and backup power both failed (alarm code
  `mains_and_backup`). Cleared by `power_restore`.
- panel_supervisory (major, verify): a panel component's `supervisory`; cleared by `supervisory_clear`.
- breaker_tripped (minor, verify): `breaker_tripped`, unless it was received within 120 s after a
  `breaker_trip` command to the device (`Fleet.note_command`): then it is the command's effect and
  raises nothing. Cleared by `breaker_closed`.
- hydrant_open is cleared by a water device's `hydrant_close`.
"""

from __future__ import annotations

import numpy as np

from alerting.core.rules import RULE, Hits, Readings
from devices.batch import ALARM_CODES
from devices.catalogue import KINDS, AlarmType, Event, Kind, Severity

A = AlarmType
#: Kinds whose `power_fail` is a power_fault: panels and the kinds that report mains power.
POWER_KINDS = frozenset({Kind.uitd} | {k for k, spec in KINDS.items() if "mains_ok" in spec.metrics})
_POWER_KIND = np.zeros(256, bool)
_POWER_KIND[list(POWER_KINDS)] = True
_BOTH_FAILED = ALARM_CODES.index("mains_and_backup")
_UITD, _WATER = int(Kind.uitd), int(Kind.water)
_RAISED_BY, _CLEARED_BY = np.zeros(256, bool), np.zeros(256, bool)
_RAISED_BY[[Event.power_fail, Event.supervisory, Event.breaker_tripped]] = True
_CLEARED_BY[[Event.power_restore, Event.supervisory_clear, Event.breaker_closed, Event.hydrant_close]] = True
_NONE = np.zeros(0, np.int64)


def state_raises(r: Readings) -> Hits:
    if not _RAISED_BY[r.attention_event.astype(np.uint8)].any():
        return Hits.of(_NONE, A.power_fault)
    power = r.with_event(Event.power_fail)
    power = power[_POWER_KIND[r.kind[power].astype(np.uint8)]]
    both = r.alarm_code[power] == _BOTH_FAILED
    tripped = r.with_event(Event.breaker_tripped)
    if tripped.size:
        since = r.received[tripped] - r.fleet.commanded("breaker_trip")[r.slot[tripped]]
        tripped = tripped[~((since >= 0) & (since <= int(r.config.breaker_command_s * 1000)))]
    return Hits.concat([
        Hits.of(power, A.power_fault, np.where(both, int(Severity.major), int(Severity.minor)),
                rule=np.where(both, RULE["power.mains_and_backup"], RULE["power.fail"])),
        Hits.of(r.events(int(Event.supervisory), _UITD), A.panel_supervisory, rule=RULE["panel.supervisory"]),
        Hits.of(tripped, A.breaker_tripped, rule=RULE["breaker.tripped"]),
    ])


def state_clears(r: Readings) -> Hits:
    if not _CLEARED_BY[r.attention_event.astype(np.uint8)].any():
        return Hits.of(_NONE, A.power_fault)
    restored = r.with_event(Event.power_restore)
    return Hits.concat([
        Hits.of(restored[_POWER_KIND[r.kind[restored].astype(np.uint8)]], A.power_fault, rule=RULE["power_restore"]),
        Hits.of(r.events(int(Event.supervisory_clear), _UITD), A.panel_supervisory, rule=RULE["supervisory_clear"]),
        Hits.of(r.with_event(Event.breaker_closed), A.breaker_tripped, rule=RULE["breaker_closed"]),
        Hits.of(r.events(int(Event.hydrant_close), _WATER), A.hydrant_open, rule=RULE["hydrant_close"]),
    ])

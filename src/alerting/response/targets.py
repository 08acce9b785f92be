"""Who is told when (CONTRACT §8 escalation, §9 "Who is told when"): pure.

Levels: 0 unit contacts, 1 grid workers, 2 micro fire stations, 3 fire brigade dispatch. An
`immediate` alarm is raised at level 1 (levels 0 and 1 told at once), a `verify` one at level 0.
Levels 2 and 3 are reached only by the fire class and `co_high`; other alarms climb to level 1 at
most; `minor` and `warning` alarms stay at level 0 and are also told to the region's duty
officers. At each level the responders of its role whose scope covers the alarm (its unit, or a
region path prefix of whole segments; an empty scope covers everything) and who are on duty
(local time, `MIAOXIANG_DEVICE_TZ`) are told; when none is, the region's duty officers are
(those on duty whose scope is the longest match).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

from devices.catalogue import ALARM_TYPES

LEVEL_ROLES = ("unit_contact", "grid_worker", "micro_station", "fire_brigade")
MAX_LEVEL = len(LEVEL_ROLES) - 1
DUTY_OFFICER = "duty_officer"
#: the alarm types that climb past level 1: the catalogue's fire class (CONTRACT §8) and those that
#: climb high without being fire class (`co_high`)
CLIMBING_TYPES = frozenset(t.name for t, spec in ALARM_TYPES.items() if spec.fire_class or spec.climbs_high)
QUIET_SEVERITIES = frozenset({"minor", "warning"})


@dataclass(frozen=True, slots=True)
class Window:
    """An on-duty window: ISO weekday (Monday 1) from `start` to `end` local time; an `end` not
    after `start` runs past midnight into the next day."""

    weekday: int
    start: time
    end: time

    def covers(self, local: datetime) -> bool:
        t, day = local.time(), local.isoweekday()
        if self.start < self.end:
            return day == self.weekday and self.start <= t < self.end
        next_day = self.weekday % 7 + 1
        return (day == self.weekday and t >= self.start) or (day == next_day and t < self.end)

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Window:
        """From `{"weekday": 1-7, "start": "HH:MM", "end": "HH:MM"}`; ValueError when malformed."""
        weekday = raw.get("weekday")
        if not isinstance(weekday, int) or isinstance(weekday, bool) or not 1 <= weekday <= 7:
            raise ValueError("weekday must be 1 (Monday) to 7 (Sunday)")
        start, end = (_hhmm(raw.get(k), k) for k in ("start", "end"))
        return cls(weekday, start, end)


def _hhmm(value: Any, name: str) -> time:
    if not isinstance(value, str) or len(value) != 5 or value[2] != ":":
        raise ValueError(f"{name} must be HH:MM")
    try:
        return time(int(value[:2]), int(value[3:]))
    except ValueError:
        raise ValueError(f"{name} must be HH:MM") from None


@dataclass(frozen=True, slots=True)
class Responder:
    """What selection needs of a responder; `on_duty` None means always."""

    responder_id: str
    role: str
    regions: tuple[str, ...] = ()
    unit_ids: tuple[str, ...] = ()
    on_duty: tuple[Window, ...] | None = None

    def on_duty_at(self, local: datetime) -> bool:
        return self.on_duty is None or any(w.covers(local) for w in self.on_duty)

    def match(self, unit_id: str | None, region: str) -> int:
        """How closely the scope covers the alarm: -1 not at all; else the length of the longest
        matching region prefix, the unit itself counting as longest; 0 for an empty scope."""
        if not self.regions and not self.unit_ids:
            return 0
        if unit_id is not None and unit_id in self.unit_ids:
            return 1 << 16
        best = -1
        for prefix in self.regions:
            if covers_region(prefix, region):
                best = max(best, len(prefix.rstrip("/")))
        return best


@dataclass(frozen=True, slots=True)
class AlarmFacts:
    type: str
    severity: str
    response: str
    unit_id: str | None
    region: str


@dataclass(frozen=True, slots=True)
class Target:
    responder_id: str
    level: int
    reason: str  # level, duty_officer


def covers_region(prefix: str, region: str) -> bool:
    """A region path prefix of whole segments ('' covers every region)."""
    p = prefix.strip().rstrip("/")
    return p == "" or region == p or region.startswith(p + "/")


def raise_level(response: str) -> int:
    """The level an alarm is raised at: 1 for `immediate` (unit contacts and grid workers at once)."""
    return 1 if response == "immediate" else 0


def max_level(alarm_type: str, severity: str) -> int:
    """The highest level an alarm may climb to."""
    if severity in QUIET_SEVERITIES:
        return 0
    return MAX_LEVEL if alarm_type in CLIMBING_TYPES else 1


def levels_due(old_level: int | None, new_level: int) -> range:
    """The levels a change makes due: all up to `new_level` when nobody was told yet (`old_level`
    None), else those above `old_level`."""
    return range(0 if old_level is None else old_level + 1, new_level + 1)


def duty_officers(alarm: AlarmFacts, responders: Iterable[Responder], local: datetime) -> list[Responder]:
    """The region's duty officers on duty: those whose scope matches the alarm most closely."""
    scored = [(r.match(alarm.unit_id, alarm.region), r) for r in responders
              if r.role == DUTY_OFFICER and r.on_duty_at(local)]
    scored = [(score, r) for score, r in scored if score >= 0]
    if not scored:
        return []
    best = max(score for score, _ in scored)
    return [r for score, r in scored if score == best]


def told_at(alarm: AlarmFacts, level: int, responders: Sequence[Responder], local: datetime) -> list[Target]:
    """Who is told when `alarm` reaches `level` at local time `local`, each once."""
    role = LEVEL_ROLES[level]
    chosen = [
        Target(r.responder_id, level, "level") for r in responders
        if r.role == role and r.match(alarm.unit_id, alarm.region) >= 0 and r.on_duty_at(local)
    ]
    if not chosen or (level == 0 and alarm.severity in QUIET_SEVERITIES):
        seen = {t.responder_id for t in chosen}
        chosen += [Target(r.responder_id, level, "duty_officer") for r in duty_officers(alarm, responders, local)
                   if r.responder_id not in seen]
    return chosen


def targets(
    alarm: AlarmFacts, levels: Iterable[int], responders: Sequence[Responder], local: datetime
) -> list[Target]:
    """Who is told for each level of `levels` (a responder once per level)."""
    return [t for level in levels for t in told_at(alarm, level, responders, local)]

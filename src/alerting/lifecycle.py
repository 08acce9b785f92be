"""Alarm lifecycle: raise, fold, upgrade, clear, acknowledge, resolve and escalate (CONTRACT §5, §8).

The transitions are pure functions of an `Alarm` value (top half). `AlarmLifecycle` applies
them in PostgreSQL, one transaction per change: the alarm row, and its `alarm_events` audit row
whose id becomes the stream event id and, when a level is reached, its `notifications` for the
responders `alerting.response.targets` selects (`alerting.response.outbox`); after the commit the
change goes to the stream hub and the notifier is woken.

Status machine: active_unack -ack-> active_ack; active_* -clear-> cleared_*; cleared_unack
-repeat-> active_unack; cleared_unack -ack-> cleared_ack; anything but resolved -resolve->
resolved. `cleared_ack` and `resolved` close the alarm: the next raise of its (key, type) is a
new alarm. The database holds one open alarm per (key, type) (`alarms_one_open_idx`), whatever
number of workers race.

Incidents (CONTRACT §8): a unit `fire` is the parent of its unit's fire-class device alarms open
when it is raised (`_adopt`) or raised while it is open (`_NEW_ALARM` links them, `_join` tells
the parent). A child neither upgrades nor climbs and queues no notification (those still queued
when it joins are skipped). Acknowledging or resolving the parent does the same to its open
children (`for_child`). A resolved parent holds the detectors of its children still in alarm
(`held_devices`): their raises are `held_report`s on the parent until the detector clears
(`hold_released`).

Times: `first_seen`, `last_seen` and `cleared_at` are device times of the decisions; timers
run on the service clock from when the alarm became active here, since nobody could
acknowledge it before that: the 60 s verify upgrade from `active_since` (the raise, or the
latest reopening), escalation from `escalated_at` (likewise, then each level reached).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, get_args
from zoneinfo import ZoneInfo

import asyncpg

from alerting.flood import DEVICE_KEY, FloodWatch, Repeats
from alerting.metrics import AlarmMetrics
from alerting.model import ACTIVE_STATUSES, FIRE_CLASS, OPEN_STATUSES, Decision, Response, Severity
from alerting.response import outbox
from alerting.response.targets import CLIMBING_TYPES, AlarmFacts, levels_due, max_level, raise_level
from alerting.stream import AlarmHub, RegionFilter
from devices.clock import Clock
from devices.db_errors import UNAVAILABLE
from devices.fleet import FLAPPING, FLOODING, Fleet

log = logging.getLogger(__name__)


Classification = Literal["fire", "false_alarm", "test", "fault", "other"]
CLASSIFICATIONS: tuple[str, ...] = get_args(Classification)
LEVEL_NAMES = ("unit_contact", "grid_worker", "micro_fire_station", "fire_brigade_dispatch")
MAX_LEVEL = len(LEVEL_NAMES) - 1
EVIDENCE_MAX = 50
TRANSIENT_RULE = "transient"
UNACKED_RULE = "unacked_60s"
LATE_REPORT = "late_report"  # the audit action of a report judged late (`late_change`)
HELD_REPORT = "held_report"  # ... of a raise of a detector a resolved incident holds (on its parent)
HOLD_RELEASED = "hold_released"  # ... of that detector's clear: its raises count again
FLOODING_RULE = "flooding"
FIRE_CLASS_NAMES = tuple(sorted(t.name for t in FIRE_CLASS))
#: an incident's parent is the `fire` of a unit (CONTRACT §8 Incidents)
INCIDENT_TYPE = "fire"
UNIT_KEY = "unit:"
DEFAULT_ESCALATION_S = {"immediate": 60.0, "verify": 300.0}
#: how long a responder's ack holds the climb of an `immediate` alarm (CONTRACT §9)
IMMEDIATE_HOLD_S = 300

#: pg_advisory_xact_lock key every alarm-writing transaction takes first (migrations/0004): event
#: ids then commit in increasing order across processes, which gap-free streams rely on.
ALARM_WRITE_LOCK = 0x6D78616C61726D

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_dt(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def to_ms(dt: datetime) -> int:
    return (dt - EPOCH) // timedelta(milliseconds=1)


def rfc3339(ms: int | None) -> str | None:
    return None if ms is None else to_dt(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def loads(value: Any) -> Any:
    """A jsonb value as asyncpg answers it: text, unless the pool has a JSON codec."""
    return json.loads(value) if isinstance(value, str) else value


def dumps(value: Any) -> str:
    """JSON for jsonb columns; numpy scalars in evidence become plain numbers."""
    return json.dumps(value, ensure_ascii=False, default=lambda o: o.item() if hasattr(o, "item") else str(o))


class AlarmNotFound(Exception):
    def __init__(self, alarm_id: int) -> None:
        super().__init__(f"alarm {alarm_id} does not exist")
        self.alarm_id = alarm_id


class InvalidTransition(Exception):
    def __init__(self, alarm_id: int, status: str, action: str) -> None:
        super().__init__(f"alarm {alarm_id} is {status}; it cannot be {action}")
        self.alarm_id, self.status, self.action = alarm_id, status, action


@dataclass(slots=True)
class Alarm:
    """One row of `alarms`, times in epoch ms."""

    alarm_id: int
    alarm_key: str
    type: str
    severity: str
    response: str
    status: str
    device_ids: list[str]
    unit_id: str | None
    region: str
    first_seen_ms: int
    last_seen_ms: int
    count: int
    rule: str
    evidence: list[dict[str, Any]]
    escalation_level: int
    escalated_at_ms: int | None
    classification: str | None
    note: str | None
    acked_by: str | None
    acked_at_ms: int | None
    cleared_at_ms: int | None
    resolved_by: str | None
    resolved_at_ms: int | None
    created_at_ms: int
    active_since_ms: int
    #: when an operator dispatched micro stations and the fire brigade (CONTRACT §9), if one did
    dispatched_at_ms: int | None = None
    #: the incident (a unit `fire`) this alarm belongs to; a parent's children (CONTRACT §8)
    parent_id: int | None = None
    children: list[int] = field(default_factory=list)

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> Alarm:
        def ms(name: str) -> int | None:
            return None if r[name] is None else to_ms(r[name])

        return cls(
            alarm_id=r["alarm_id"], alarm_key=r["alarm_key"], type=r["type"], severity=r["severity"],
            response=r["response"], status=r["status"], device_ids=list(r["device_ids"]), unit_id=r["unit_id"],
            region=r["region"], first_seen_ms=to_ms(r["first_seen"]), last_seen_ms=to_ms(r["last_seen"]),
            count=r["count"], rule=r["rule"], evidence=loads(r["evidence"]),
            escalation_level=r["escalation_level"], escalated_at_ms=ms("escalated_at"),
            classification=r["classification"], note=r["note"], acked_by=r["acked_by"], acked_at_ms=ms("acked_at"),
            cleared_at_ms=ms("cleared_at"), resolved_by=r["resolved_by"], resolved_at_ms=ms("resolved_at"),
            created_at_ms=to_ms(r["created_at"]), active_since_ms=to_ms(r["active_since"]),
            dispatched_at_ms=None if r.get("dispatched_at") is None else to_ms(r["dispatched_at"]),
            parent_id=r.get("parent_id"), children=list(r.get("children") or []),
        )

    @property
    def state_ms(self) -> int:
        """Device time of the newest decision applied: anything older is a late report."""
        return max(self.last_seen_ms, self.cleared_at_ms or 0)

    def to_json(self) -> dict[str, Any]:
        """The alarm object of CONTRACT §5."""
        return {
            "alarm_id": str(self.alarm_id),
            "type": self.type,
            "severity": self.severity,
            "response": self.response,
            "status": self.status,
            "device_ids": self.device_ids,
            "unit_id": self.unit_id,
            "region": self.region,
            "first_seen": rfc3339(self.first_seen_ms),
            "last_seen": rfc3339(self.last_seen_ms),
            "count": self.count,
            "rule": self.rule,
            "evidence": self.evidence,
            "escalation_level": self.escalation_level,
            "classification": self.classification,
            "raised_at": rfc3339(self.created_at_ms),
            "dispatched_at": rfc3339(self.dispatched_at_ms),
            "parent_id": None if self.parent_id is None else str(self.parent_id),
            "children": [str(c) for c in self.children],
        }


@dataclass(slots=True)
class Change:
    """An alarm after one transition, with its audit action and whom to notify once committed."""

    alarm: Alarm
    action: str
    detail: dict[str, Any] = field(default_factory=dict)
    actor: str = "system"
    notify_level: int | None = None
    folded: bool = False  # a repeat of the alarm's condition (repeated, reopened or upgraded by a raise)
    event_id: int = 0
    #: the highest level already told before this change (None: nobody yet); `upgrade`: the
    #: response became immediate, so everyone already told gets one update
    told_level: int | None = None
    upgrade: bool = False
    #: changes this one brings along in its transaction, saved and published after it (an
    #: incident's parent told of a new child; the children a new parent adopts)
    then: list[Change] = field(default_factory=list)


# --- pure transitions -------------------------------------------------------------------------
def _with_rule(rule: str, extra: str) -> str:
    return rule if extra in rule.split("+") else f"{rule}+{extra}"


def _union(a: list[str], b: list[str]) -> list[str]:
    return a + [x for x in b if x not in a]


def _add_evidence(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Append, keeping the first entry (what started the alarm) and the newest ones."""
    merged = old + new
    return merged if len(merged) <= EVIDENCE_MAX else merged[:1] + merged[-(EVIDENCE_MAX - 1):]


def new_alarm(d: Decision, alarm_id: int, unit_id: str | None, region: str, now_ms: int) -> Alarm:
    """The alarm a raise decision opens (as `_NEW_ALARM` inserts it)."""
    return Alarm(
        alarm_id=alarm_id, alarm_key=d.key, type=d.type.name, severity=d.severity.name, response=d.response.name,
        status="active_unack", device_ids=list(d.device_ids), unit_id=unit_id, region=region, first_seen_ms=d.ts_ms,
        last_seen_ms=d.ts_ms, count=1, rule=d.rule, evidence=json.loads(dumps(d.evidence)),
        escalation_level=raise_level(d.response.name),
        escalated_at_ms=now_ms, classification=None, note=None, acked_by=None, acked_at_ms=None, cleared_at_ms=None,
        resolved_by=None, resolved_at_ms=None, created_at_ms=now_ms, active_since_ms=now_ms,
    )


def report_seq(d: Decision) -> int | None:
    """The seq of the report behind a decision (its evidence entry of the same device time), if any."""
    for entry in d.evidence:
        if entry.get("ts_ms") == d.ts_ms and entry.get("device_id") in d.device_ids and "seq" in entry:
            return entry["seq"]
    return None


def _raised_detail(d: Decision) -> dict[str, Any]:
    """The audit detail of a raise: its device time, rule and seq (what recognises a copy of it)."""
    detail: dict[str, Any] = {"ts": rfc3339(d.ts_ms), "rule": d.rule}
    seq = report_seq(d)
    if seq is not None:
        detail["seq"] = seq
    return detail


def fold(alarm: Alarm, d: Decision, now_ms: int, *, fresh: bool = False) -> Change | None:
    """A raise decision on the open alarm of its (key, type); None when it is older (device time)
    than the alarm's state, unless `fresh`: received after the alarm's latest change and no copy
    of a report it took (a device clock set back), when it folds all the same."""
    if d.ts_ms < alarm.state_ms and not fresh:
        return None
    devices = _union(alarm.device_ids, d.device_ids)
    new = replace(alarm, count=alarm.count + 1, last_seen_ms=max(alarm.last_seen_ms, d.ts_ms), device_ids=devices)
    detail = _raised_detail(d)
    action = "repeated"
    if alarm.status == "cleared_unack":
        new.status, new.cleared_at_ms, action = "active_unack", None, "reopened"
        new.active_since_ms = new.escalated_at_ms = now_ms  # a new wait for an answer begins
    severity = min(Severity[alarm.severity], d.severity)
    response = min(Response[alarm.response], d.response)
    if alarm.parent_id is not None:  # a child: its incident's parent answers for it
        severity, response = Severity[alarm.severity], Response[alarm.response]
    notify = None
    told: int | None = None
    upgrade = False
    if severity.name != alarm.severity or response.name != alarm.response:
        new.severity, new.response = severity.name, response.name
        new.rule = _with_rule(alarm.rule, d.rule)
        detail["from"] = {"severity": alarm.severity, "response": alarm.response, "rule": alarm.rule}
        detail["to"] = {"severity": new.severity, "response": new.response, "rule": new.rule}
        action = "upgraded"
        if response.name != alarm.response:
            if alarm.response == "none":
                new.escalated_at_ms = now_ms  # escalation starts once the alarm needs a response
                new.escalation_level = raise_level(response.name)
            elif response.name == "immediate":  # at once to level max(current, 1), then every 60 s
                told, upgrade = alarm.escalation_level, True
                new.escalation_level, new.escalated_at_ms = max(alarm.escalation_level, 1), now_ms
            if new.status == "active_unack":
                notify = new.escalation_level
    if action != "repeated" or len(devices) > len(alarm.device_ids):
        new.evidence = _add_evidence(alarm.evidence, d.evidence)
    return Change(new, action, detail, notify_level=notify, folded=True, told_level=told, upgrade=upgrade)


def is_repeat(alarm: Alarm, d: Decision, now_ms: int) -> Alarm | None:
    """The alarm after `d` when `d` only repeats it (count and last_seen change, nothing else:
    no reopening, upgrade or new device), else None."""
    if d.action != "raise" or alarm.status not in ACTIVE_STATUSES:
        return None
    change = fold(alarm, d, now_ms)
    if change is None or change.action != "repeated" or change.alarm.device_ids != alarm.device_ids:
        return None
    return change.alarm


def clear(alarm: Alarm, d: Decision) -> Change | None:
    """A clear decision: the condition ended. None when already cleared or when it is late."""
    if d.ts_ms < alarm.last_seen_ms or alarm.status not in ACTIVE_STATUSES:
        return None
    status = "cleared_unack" if alarm.status == "active_unack" else "cleared_ack"
    new = replace(alarm, status=status, cleared_at_ms=d.ts_ms)
    detail: dict[str, Any] = {"ts": rfc3339(d.ts_ms), "rule": d.rule}
    if d.rule == TRANSIENT_RULE and alarm.response != "none":
        new.response, new.rule = "none", _with_rule(alarm.rule, TRANSIENT_RULE)
        detail["from"] = {"response": alarm.response, "rule": alarm.rule}
        detail["to"] = {"response": "none", "rule": new.rule}
    return Change(new, "cleared", detail)


def late_change(alarm: Alarm, d: Decision, received_ms: int) -> Change:
    """The audit trace of a report judged late for `alarm` (older than its state and received
    before its latest change, or a copy of a report it took; a clear older than its last raise):
    the alarm unchanged, an audit row `late_report`."""
    detail = {**_raised_detail(d), "decision": d.action, "received": rfc3339(received_ms),
              "state": rfc3339(alarm.state_ms)}
    return Change(alarm, LATE_REPORT, detail)


def ack_change(alarm: Alarm, actor: str, now_ms: int) -> Change:
    if alarm.status == "active_unack":
        status = "active_ack"
    elif alarm.status == "cleared_unack":
        status = "cleared_ack"
    else:
        raise InvalidTransition(alarm.alarm_id, alarm.status, "acknowledged")
    return Change(replace(alarm, status=status, acked_by=actor, acked_at_ms=now_ms), "acked", actor=actor)


def resolve_change(alarm: Alarm, classification: str, note: str | None, actor: str, now_ms: int) -> Change:
    if classification not in CLASSIFICATIONS:
        raise ValueError(f"classification must be one of {', '.join(CLASSIFICATIONS)}")
    if alarm.status == "resolved":
        raise InvalidTransition(alarm.alarm_id, alarm.status, "resolved")
    new = replace(
        alarm, status="resolved", classification=classification, note=note, resolved_by=actor, resolved_at_ms=now_ms
    )
    return Change(new, "resolved", {"classification": classification, "note": note, "from": alarm.status}, actor=actor)


def upgrade_unacked(alarm: Alarm, now_ms: int, after_ms: int, flapping: bool) -> Change | None:
    """CONTRACT §8: a verify fire-class alarm still unacknowledged after 60 s becomes immediate
    (not for a flapping detector, whose single alarms stay verify)."""
    if (
        alarm.status != "active_unack" or alarm.response != "verify" or alarm.type not in FIRE_CLASS_NAMES
        or flapping or now_ms - alarm.active_since_ms < after_ms or alarm.parent_id is not None
    ):
        return None
    new = replace(alarm, response="immediate", rule=_with_rule(alarm.rule, UNACKED_RULE),
                  escalation_level=max(alarm.escalation_level, 1), escalated_at_ms=now_ms)
    detail = {"because": UNACKED_RULE, "from": {"response": "verify", "rule": alarm.rule},
              "to": {"response": "immediate", "rule": new.rule}}
    return Change(new, "upgraded", detail, notify_level=new.escalation_level, told_level=alarm.escalation_level,
                  upgrade=True)


def escalate(
    alarm: Alarm, now_ms: int, interval_ms: dict[str, int], held_until_ms: int | None = None
) -> Change | None:
    """One level up when an unacknowledged, still active alarm has waited its interval, up to
    its highest level (`targets.max_level`), unless a responder's ack holds the climb or it is
    an incident's child."""
    every = interval_ms.get(alarm.response)
    since = alarm.escalated_at_ms if alarm.escalated_at_ms is not None else alarm.created_at_ms
    if (
        alarm.status != "active_unack" or alarm.parent_id is not None or every is None or now_ms - since < every
        or alarm.escalation_level >= max_level(alarm.type, alarm.severity)
        or (held_until_ms is not None and now_ms < held_until_ms)
    ):
        return None
    level = alarm.escalation_level + 1
    new = replace(alarm, escalation_level=level, escalated_at_ms=now_ms)
    return Change(new, "escalated", {"level": level, "to": LEVEL_NAMES[level]}, notify_level=level,
                  told_level=alarm.escalation_level)


def is_incident(d: Decision) -> bool:
    """Whether a raise would open an incident's parent: a unit's `fire`."""
    return d.type.name == INCIDENT_TYPE and d.key.startswith(UNIT_KEY)


def for_child(parent: Change, child: Alarm, now_ms: int) -> Change | None:
    """What acknowledging or resolving an incident's parent does to one of its children: the same,
    with the parent's actor, classification and note, to an open child (else nothing)."""
    p = parent.alarm
    if parent.action == "acked" and child.status in ("active_unack", "cleared_unack"):
        change = ack_change(child, parent.actor, now_ms)
    elif parent.action == "resolved" and child.status in OPEN_STATUSES:
        change = resolve_change(child, p.classification or "other", p.note, parent.actor, now_ms)
    else:
        return None
    change.detail["parent_id"] = str(p.alarm_id)
    return change


def held_devices(children: Sequence[Alarm]) -> list[str]:
    """The detectors a resolved parent holds: those of its children still in alarm."""
    return sorted({d for c in children if c.status in ACTIVE_STATUSES for d in c.device_ids})


def common_region(regions: Sequence[str]) -> str:
    """The longest common path prefix of region paths (`a/b/c`, `a/b/d` -> `a/b`)."""
    parts = [r.split("/") for r in regions if r]
    if not parts:
        return ""
    prefix = parts[0]
    for p in parts[1:]:
        n = 0
        while n < min(len(prefix), len(p)) and prefix[n] == p[n]:
            n += 1
        prefix = prefix[:n]
    return "/".join(prefix)


# --- I/O: PostgreSQL, hub, notifier -----------------------------------------------------------
class Notify(Protocol):
    """What the lifecycle needs of a notifier: a nudge that the outbox has new rows (never waits)."""

    def wake(self) -> None: ...


def _late_for(alarm_id: str, received: str, ts: str, seq: str) -> str:
    """SQL: a raise received at `received`, of device time `ts` and seq `seq`, is late for alarm
    `alarm_id` (see `_IS_LATE`)."""
    return f"""coalesce((SELECT max(e.at) FROM alarm_events e
                WHERE e.alarm_id = {alarm_id} AND e.action <> '{LATE_REPORT}') >= {received}
           OR EXISTS (SELECT 1 FROM alarm_events e WHERE e.alarm_id = {alarm_id} AND e.detail ->> 'ts' = {ts}
                      AND coalesce(e.detail ->> 'seq', '') = {seq}), false)"""


#: The partial unique index's predicate (migrations/0001_initial.sql), which ON CONFLICT must name.
_OPEN_SQL = ", ".join(f"'{status}'" for status in OPEN_STATUSES)
_FIRE_SQL = ", ".join(f"'{name}'" for name in FIRE_CLASS_NAMES)


def _held_by(key: str, type_: str, devices: str, evidence: str) -> str:
    """SQL: resolved parent `h` holds a raise of (key, type, devices, evidence) with no open alarm
    of its own to fold into: a fire-class alarm of a detector `h` holds, or the unit's `fire` again
    with a held detector and no detector whose alarm is open (a new one would make a new fire)."""
    return f"""h.held_devices <> '{{}}' AND {type_} IN ({_FIRE_SQL})
   AND NOT EXISTS (SELECT 1 FROM alarms o WHERE o.alarm_key = {key} AND o.type = {type_}
                                            AND o.status IN ({_OPEN_SQL}))
   AND CASE WHEN {key} LIKE '{UNIT_KEY}%' THEN h.alarm_key = {key}
            AND EXISTS (SELECT 1 FROM jsonb_array_elements({evidence}::jsonb) e
                         WHERE e ->> 'device_id' = ANY(h.held_devices))
            AND NOT EXISTS (SELECT 1 FROM alarms o
                             WHERE o.alarm_key = ANY(ARRAY(SELECT '{DEVICE_KEY}' || (e ->> 'device_id')
                                                             FROM jsonb_array_elements({evidence}::jsonb) e
                                                            WHERE e ->> 'type' IN ({_FIRE_SQL})))
                               AND o.type IN ({_FIRE_SQL}) AND o.status IN ({_OPEN_SQL}))
       ELSE h.held_devices && {devices} END"""


#: the open parent a new fire-class device alarm joins: its unit's `fire`, if open
_PARENT_OF_NEW = f"""(SELECT p.alarm_id FROM alarms p WHERE $1 LIKE '{DEVICE_KEY}%' AND $2 IN ({_FIRE_SQL})
    AND p.alarm_key = '{UNIT_KEY}' || $6 AND p.type = '{INCIDENT_TYPE}' AND p.status IN ({_OPEN_SQL}))"""
_NEW_ALARM = f"""
INSERT INTO alarms (alarm_key, type, severity, response, status, device_ids, unit_id, region,
                    first_seen, last_seen, count, rule, evidence, escalation_level, escalated_at, created_at,
                    active_since, parent_id)
SELECT $1, $2, $3, $4, 'active_unack', $5, $6,
       coalesce(nullif($7, ''), (SELECT region FROM units WHERE unit_id = $6), ''),
       $8, $8, 1, $9, $10::jsonb, CASE WHEN $4 = 'immediate' THEN 1 ELSE 0 END, $11, $11, $11, {_PARENT_OF_NEW}
WHERE NOT EXISTS (  -- a late report raises nothing (`_decide` audits it on the closed alarm)
    SELECT 1 FROM alarms c WHERE c.alarm_key = $1 AND c.type = $2 AND c.status IN ('cleared_ack', 'resolved')
       AND greatest(c.last_seen, c.cleared_at) >= $8 AND {_late_for("c.alarm_id", "$12", "$13", "$14")})
  AND NOT EXISTS (  -- nor does a detector held by a resolved incident (`_decide` records it on the parent)
    SELECT 1 FROM alarms h WHERE {_held_by("$1", "$2", "$5", "$10")})
ON CONFLICT (alarm_key, type) WHERE status IN ({_OPEN_SQL})
"""
#: the resolved parent holding a raise ($1 key, $2 type, $3 devices, $4 evidence), locked
_HOLDING = f"SELECT * FROM alarms h WHERE {_held_by('$1', '$2', '$3', '$4')} ORDER BY alarm_id DESC LIMIT 1 FOR UPDATE"
#: a detector cleared ($1): the resolved parents holding it let it go
_RELEASE = """UPDATE alarms SET held_devices = array_remove(held_devices, $1)
               WHERE held_devices <> '{}' AND $1 = ANY(held_devices) RETURNING *"""
#: a new parent ($1, unit $2) adopts its unit's open fire-class device alarms without a parent
_ADOPT = f"""UPDATE alarms SET parent_id = $1
              WHERE unit_id = $2 AND alarm_key LIKE '{DEVICE_KEY}%' AND type IN ({_FIRE_SQL})
                AND status IN ({_OPEN_SQL}) AND parent_id IS NULL AND alarm_id <> $1
          RETURNING *"""
#: parent $1 (if still open) counts new children $2
_ADD_CHILDREN = f"""UPDATE alarms SET children = children || $2::bigint[]
                     WHERE alarm_id = $1 AND status IN ({_OPEN_SQL}) RETURNING *"""
#: Whether a raise older (device time) than alarm $1's state is late for it: received ($2) no
#: later than the alarm's latest change, or a copy (device time $3 as `rfc3339`, seq $4 or '')
#: of a report it took. A clock set back makes reports older than they are; the receive time
#: does not lie, so only a report in flight when the alarm changed, or a copy, is late.
_IS_LATE = "SELECT " + _late_for("$1", "$2", "$3", "$4")
_LATEST_CLOSED = """
SELECT * FROM alarms WHERE alarm_key = $1 AND type = $2 AND status IN ('cleared_ack', 'resolved')
   AND greatest(last_seen, cleared_at) >= $3 ORDER BY alarm_id DESC LIMIT 1 FOR UPDATE
"""
#: A raise inside a transaction: the new alarm, or the open one locked to fold into.
_INSERT_OR_LOCK = _NEW_ALARM + """
DO UPDATE SET alarm_key = EXCLUDED.alarm_key  -- no change: locks and answers the open alarm to fold into
RETURNING *, (xmax = 0) AS inserted
"""
#: A raise in one statement, new alarm and audit row together; no row when there is an open
#: alarm to fold into (or the report is late): then the transactional path takes over.
_RAISE_NEW = "WITH new AS (" + _NEW_ALARM + """
DO NOTHING RETURNING alarm_id, region, parent_id)
, event AS (
INSERT INTO alarm_events (alarm_id, at, action, actor, detail, snapshot)
SELECT alarm_id, $11, 'raised', 'system', $15::jsonb,
       $16::jsonb || jsonb_build_object('alarm_id', alarm_id::text, 'region', region, 'parent_id', parent_id::text)
FROM new
RETURNING event_id, alarm_id, snapshot ->> 'region' AS region, (snapshot ->> 'parent_id')::bigint AS parent_id)
SELECT event_id, alarm_id, region, parent_id FROM event
"""
_INSERT_EVENT = "INSERT INTO alarm_events (alarm_id, at, action, actor, detail, snapshot)"
_RAISED_EVENT = _INSERT_EVENT + " VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb) RETURNING event_id"
_UPDATE_AND_EVENT = """
WITH changed AS (
    UPDATE alarms SET severity = $2, response = $3, status = $4, device_ids = $5, unit_id = $6, region = $7,
           last_seen = $8, count = $9, rule = $10, evidence = $11::jsonb, escalation_level = $12, escalated_at = $13,
           classification = $14, note = $15, acked_by = $16, acked_at = $17, cleared_at = $18, resolved_by = $19,
           resolved_at = $20, active_since = $26,
           -- a responder's ack-hold: reset when the alarm reopens (a new wait for an answer), at most
           -- IMMEDIATE_HOLD_S more when it becomes immediate; an arrival or a feedback holds for good
           held_until = CASE
               WHEN held_until IS NULL OR EXISTS (SELECT 1 FROM responder_actions r WHERE r.alarm_id = $1
                                                   AND r.action IN ('arrive', 'feedback')) THEN held_until
               WHEN $4 = 'active_unack' AND status NOT IN ('active_unack', 'active_ack') THEN NULL
               WHEN $3 = 'immediate' AND response <> 'immediate'
                   THEN least(held_until, $21::timestamptz + make_interval(secs => $27))
               ELSE held_until END
    WHERE alarm_id = $1)
""" + _INSERT_EVENT + " VALUES ($1, $21, $22, $23, $24::jsonb, $25::jsonb) RETURNING event_id"
#: Decisions written per transaction (sorted by key, so that workers never deadlock) ...
CHUNK = 500
#: ... unless there are at most this many: then each goes alone, a new alarm in one statement.
FEW = 8
#: Open alarms remembered to recognise repeats without a round trip (least recently used forgotten).
OPEN_CACHE = 10_000
#: Passes over one batch: each writes what is not a repeat, at most one decision per alarm, so that
#: the repeats behind a new alarm in the same batch are coalesced once it exists; the last writes all.
PASSES = 3
_ACTIVE_SQL = ", ".join(f"'{status}'" for status in ACTIVE_STATUSES)
#: Coalesced repeats of an alarm still active; no row when it was cleared or closed meanwhile.
_ADD_REPEATS = f"""
UPDATE alarms SET count = count + $2, last_seen = greatest(last_seen, $3)
WHERE alarm_id = $1 AND status IN ({_ACTIVE_SQL}) RETURNING *
"""
_DEVICE_AUDIT = "INSERT INTO device_audit (device_id, action, actor, detail) VALUES ($1, $2, $3, $4::jsonb)"


def _opt_dt(ms: int | None) -> datetime | None:
    return None if ms is None else to_dt(ms)


def _held_ms(row: asyncpg.Record) -> int | None:
    """Until when a responder's ack holds the alarm's climb (`alarms.held_until`), if it does."""
    return None if row["held_until"] is None else to_ms(row["held_until"])


def _report_args(d: Decision, received_ms: int | None, now_ms: int) -> tuple[datetime, str, str]:
    """The parameters that judge whether a raise is late (`_IS_LATE`): receive time (else now),
    device time as the audit detail writes it, seq ('' when none)."""
    seq = report_seq(d)
    received = to_dt(now_ms if received_ms is None else received_ms)
    return received, rfc3339(d.ts_ms) or "", "" if seq is None else str(seq)


class AlarmLifecycle:
    def __init__(
        self,
        pool: asyncpg.Pool,
        hub: AlarmHub,
        fleet: Fleet,
        clock: Clock,
        *,
        notifier: Notify | None = None,
        metrics: AlarmMetrics | None = None,
        escalation_s: dict[str, float] | None = None,
        unacked_upgrade_s: float = 60.0,
        retry_max_s: float = 5.0,
        repeat_flush_s: float = 1.0,
        flood_alarms_per_s: float = 5.0,
        flood_window_s: float = 10.0,
        device_tz: str = "Asia/Shanghai",
    ) -> None:
        self.pool = pool
        #: on-duty windows of responders are in this zone (MIAOXIANG_DEVICE_TZ)
        self.tz = ZoneInfo(device_tz)
        self.hub = hub
        self.fleet = fleet
        self.clock = clock
        self.notifier = notifier
        self.metrics = metrics
        self.escalation_ms = {k: int(v * 1000) for k, v in (escalation_s or DEFAULT_ESCALATION_S).items()}
        self.unacked_upgrade_ms = int(unacked_upgrade_s * 1000)
        self.retry_max_s = retry_max_s
        # Commit and publish under one lock, so this process publishes event ids in increasing order.
        self._writer = asyncio.Lock()
        #: True from a failed write until the next one succeeds (raises are then shown as pending).
        self.db_down = False
        #: Flood control: open alarms as last written or repeated here, by (key, type); repeats not
        #: yet written (`flush`, every `repeat_flush_s`); the decision rate marking a device flooding.
        self._open: OrderedDict[tuple[str, str], Alarm] = OrderedDict()
        self._repeats: dict[tuple[str, str], Repeats] = {}
        self.repeat_flush_s = repeat_flush_s
        self.flood = FloodWatch(flood_alarms_per_s, flood_window_s)

    # --- decisions from the correlation core ---------------------------------------------
    async def handle(
        self, decisions: Sequence[Decision], received_ms: Sequence[int | None] | None = None, *, shown: bool = False
    ) -> None:
        """Apply decisions; those of one (key, type) in their order. `received_ms[i]`, when given,
        is when the reading behind decision i was received (receipt-to-stream latency metric).

        A repeat of an open alarm (count and last_seen only) is coalesced in memory and written by
        `flush` (at most once per second per alarm), so that a flooding detector never delays the
        other decisions: new alarms, upgrades, reopenings and clears are written at once, after
        the coalesced repeats of their own alarm. A few decisions (the usual batch) are written
        one by one, a new alarm in one round trip; a storm of them in transactions of up to
        CHUNK, sorted by (key, type) so that concurrent workers lock alarms in one order. While
        the database is unreachable this retries (after showing each raise as `alarm_pending` on
        the stream, unless the caller already did: `shown`), so the caller feels backpressure
        instead of losing an alarm. A decision the database rejects is logged and skipped, the
        others still written.
        """
        received = list(received_ms) if received_ms is not None else [None] * len(decisions)
        self.flood.count(list(decisions))
        todo = list(range(len(decisions)))
        unshown: list[Decision] | None = None
        for n in range(PASSES):
            write, later, taken = self._sort_out(decisions, todo, last=n == PASSES - 1)
            if unshown is None:
                unshown = [] if shown else [decisions[i] for i in todo if i not in taken]
                if self.db_down:
                    self.show_pending(unshown)
            order = sorted(write, key=lambda i: (decisions[i].key, decisions[i].type))
            size = 1 if len(order) <= FEW else CHUNK
            for start in range(0, len(order), size):
                chunk = order[start:start + size]
                await self._apply([decisions[i] for i in chunk], [received[i] for i in chunk], unshown)
            if not later:
                return
            todo = later

    def _sort_out(
        self, decisions: Sequence[Decision], todo: list[int], *, last: bool
    ) -> tuple[list[int], list[int], set[int]]:
        """One pass: coalesce the repeats; answer the decisions to write now (the first one of
        each other alarm; on the `last` pass all of them), those for the next pass, and the
        indexes coalesced."""
        write: list[int] = []
        later: list[int] = []
        taken: set[int] = set()
        blocked: set[tuple[str, str]] = set()
        for i in todo:
            d = decisions[i]
            key = (d.key, d.type.name)
            if key in blocked:
                (write if last else later).append(i)
            elif self._coalesce(key, d):
                taken.add(i)
            else:
                write.append(i)
                blocked.add(key)
        return write, later, taken

    def _coalesce(self, key: tuple[str, str], d: Decision) -> bool:
        """Take `d` into its alarm's pending repeats when it is a repeat of an alarm known open."""
        alarm = self._open.get(key)
        if alarm is None:
            return False
        after = is_repeat(alarm, d, self.clock())
        pending = self._repeats.get(key)
        if after is None or (pending is not None and pending.alarm_id != alarm.alarm_id):
            return False
        self._open[key] = after
        self._open.move_to_end(key)
        if pending is None:
            self._repeats[key] = Repeats(alarm.alarm_id, 1, d)
        else:
            pending.add(d)
        if self.metrics:
            self.metrics.folded.labels(d.type.name).inc()
        return True

    def show_pending(self, decisions: list[Decision]) -> None:
        """Show raises the database cannot take yet on the stream at once (each only once); not
        the repeats of an alarm known open, which change nothing but its count."""
        for d in decisions:
            known = self._open.get((d.key, d.type.name))
            if d.action == "raise" and (known is None or is_repeat(known, d, self.clock()) is None):
                self.hub.publish_pending(self._pending_json(d))
        decisions.clear()

    async def _apply(self, decisions: list[Decision], received_ms: list[int | None], unshown: list[Decision]) -> None:
        """Write decisions, retrying while the database is unreachable; on the first failure,
        every raise of the caller's batch not yet shown (`unshown`) goes to the stream as pending."""
        delay = 0.05
        while True:
            try:
                one_raise = len(decisions) == 1 and decisions[0].action == "raise"
                if one_raise and await self._raise_new(decisions[0], received_ms[0]):
                    self.db_down = False
                    return
                ignored = await self._write_decisions(decisions, received_ms)
                self.db_down = False
                if self.metrics:
                    for d in ignored:
                        self.metrics.ignored.labels(d.action).inc()
                return
            except UNAVAILABLE as e:  # retried, never dropped
                if self.metrics:
                    self.metrics.db_errors.inc()
                if not self.db_down:
                    log.error("cannot write %d alarm decisions (%s); retrying", len(decisions), e)
                self.db_down = True
                self.show_pending(unshown)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)
            except asyncpg.PostgresError as e:
                if self.metrics:
                    self.metrics.db_errors.inc()
                if len(decisions) > 1:  # find the culprit: one transaction per decision
                    for d, received in zip(decisions, received_ms):
                        await self._apply([d], [received], unshown)
                else:
                    d = decisions[0]
                    log.error("alarm decision %s %s/%s rejected by the database (%s); skipped",
                              d.action, d.key, d.type.name, e)
                return

    async def _raise_new(self, d: Decision, received_ms: int | None) -> bool:
        """Raise a new alarm in one statement; False when an open alarm exists (or the report is late
        or held), and for an incident's parent, which adopts its children in `_decide`."""
        if is_incident(d):
            return False
        unit_id, region = self._place(d)
        async with self._writer, self.pool.acquire() as conn:
            now = self.clock()
            alarm = new_alarm(d, 0, unit_id, region, now)
            async with conn.transaction():  # the alarm, its audit row and its notifications
                row = await conn.fetchrow(
                    _RAISE_NEW, d.key, d.type.name, d.severity.name, d.response.name, d.device_ids, unit_id, region,
                    to_dt(d.ts_ms), d.rule, dumps(d.evidence), to_dt(now), *_report_args(d, received_ms, now),
                    dumps(_raised_detail(d)), dumps(alarm.to_json()),
                )
                if row is None:
                    return False
                alarm.alarm_id, alarm.region, alarm.parent_id = row["alarm_id"], row["region"], row["parent_id"]
                notify = alarm.escalation_level if alarm.response != "none" else None
                change = Change(alarm, "raised", _raised_detail(d), notify_level=notify, event_id=row["event_id"])
                await self._join(conn, change)
                for then in change.then:
                    await self._save(conn, then, now)
                await self._queue(conn, change, now)
            self._committed(change, received_ms)
            return True

    async def _write_decisions(self, decisions: list[Decision], received_ms: list[int | None]) -> list[Decision]:
        """Write decisions in one transaction, each after the coalesced repeats of its alarm;
        answer those that changed nothing."""
        ignored: list[Decision] = []
        taken: list[tuple[tuple[str, str], Repeats]] = []
        try:
            async with self._committing() as (conn, now, changes):
                for d, received in zip(decisions, received_ms):
                    await self._flush_key(conn, (d.key, d.type.name), now, changes, taken)
                    change = await self._decide(conn, d, now, received)
                    if change is None:
                        ignored.append(d)
                        continue
                    await self._save(conn, change, now)
                    changes.append((change, received))
        except BaseException:
            self._restore(taken)
            raise
        return ignored

    async def _flush_key(
        self, conn: asyncpg.Connection, key: tuple[str, str], now: int, changes: list[tuple[Change, int | None]],
        taken: list[tuple[tuple[str, str], Repeats]],
    ) -> None:
        """Write the coalesced repeats of one alarm (if any) in the caller's transaction; they
        go to `taken` (put back by `_restore` should the transaction fail)."""
        repeats = self._repeats.pop(key, None)
        if repeats is None:
            return
        taken.append((key, repeats))
        change = await self._write_repeats(conn, repeats, now)
        if change is not None:
            changes.append((change, None))

    async def _write_repeats(self, conn: asyncpg.Connection, r: Repeats, now: int) -> Change | None:
        """Add `r.count` repeats to their alarm: one update, one audit row, one stream event. When
        the alarm is no longer active (cleared or closed by another process meanwhile), the
        newest repeat is decided as usual instead (and the others' count is lost)."""
        row = await conn.fetchrow(_ADD_REPEATS, r.alarm_id, r.count, to_dt(r.last.ts_ms))
        if row is None:
            log.warning("alarm %d closed while %d repeats waited; the newest decided anew", r.alarm_id, r.count)
            change = await self._decide(conn, r.last, now)
            if change is not None:
                await self._save(conn, change, now)
            return change
        alarm = Alarm.from_record(row)
        detail = {**_raised_detail(r.last), "repeats": r.count}
        change = Change(alarm, "repeated", detail)
        event = (to_dt(now), change.action, change.actor, dumps(detail), dumps(alarm.to_json()))
        change.event_id = await conn.fetchval(_RAISED_EVENT, alarm.alarm_id, *event)
        return change

    def _restore(self, taken: list[tuple[tuple[str, str], Repeats]]) -> None:
        """Put back repeats whose write failed, before any coalesced since."""
        for key, repeats in taken:
            newer = self._repeats.get(key)
            self._repeats[key] = repeats if newer is None else repeats.merge(newer)

    async def flush(self, now_ms: int) -> None:
        """Write the repeats coalesced so far (up to CHUNK alarms per transaction, so that other
        writes interleave), then mark the devices whose alarm rate stayed above the flood bound."""
        keys = list(self._repeats)
        for start in range(0, len(keys), CHUNK):
            taken: list[tuple[tuple[str, str], Repeats]] = []
            try:
                async with self._committing() as (conn, now, changes):
                    for key in keys[start:start + CHUNK]:
                        await self._flush_key(conn, key, now, changes, taken)
            except BaseException:
                self._restore(taken)
                raise
        for device_id in self.flood.due(now_ms):
            slot = self.fleet.slot(device_id)
            if slot >= 0 and not int(self.fleet.flags[slot]) & FLOODING:
                await self._mark_flooding(device_id, slot)

    async def _mark_flooding(self, device_id: str, slot: int) -> None:
        """Mark a device flooding: audited in `device_audit`, and on each of its open alarms (rule
        `+flooding`, audit event `flooding_marked`) in one transaction; then the fleet flag."""
        flood = self.flood
        detail = {"alarms_per_s": flood.rate_per_s, "window_s": flood.window_s}
        async with self._committing() as (conn, now, changes):
            await conn.execute(_DEVICE_AUDIT, device_id, "flooding_marked", "system", dumps(detail))
            rows = await conn.fetch(
                "SELECT * FROM alarms WHERE alarm_key = $1 AND status = ANY($2::text[]) ORDER BY alarm_id FOR UPDATE",
                DEVICE_KEY + device_id, list(OPEN_STATUSES),
            )
            for row in rows:
                alarm = Alarm.from_record(row)
                change = Change(replace(alarm, rule=_with_rule(alarm.rule, FLOODING_RULE)), "flooding_marked", detail)
                await self._save(conn, change, now)
                changes.append((change, None))
        self.fleet.set_flooding(slot, True)
        log.warning("device %s marked flooding: over %g alarm decisions/s for %g s; its repeats are coalesced",
                    device_id, flood.rate_per_s, flood.window_s)

    @contextlib.asynccontextmanager
    async def _committing(self) -> AsyncIterator[tuple[asyncpg.Connection, int, list[tuple[Change, int | None]]]]:
        """Under the writer lock: a transaction, the clock, and a list for its changes, which are
        published as soon as it commits (before the connection goes back to the pool)."""
        async with self._writer, self.pool.acquire() as conn:
            changes: list[tuple[Change, int | None]] = []
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", ALARM_WRITE_LOCK)
                yield conn, self.clock(), changes
            for change, received in changes:
                self._committed(change, received)

    async def _decide(
        self, conn: asyncpg.Connection, d: Decision, now: int, received_ms: int | None = None
    ) -> Change | None:
        """The change one decision makes, with its alarm row locked; None when it changes nothing.
        A report judged late changes nothing but leaves its trace: `late_report` on the alarm it
        was late for. `received_ms`: when its reading was received (else now)."""
        received = now if received_ms is None else received_ms
        if d.action == "raise":
            unit_id, region = self._place(d)
            report = _report_args(d, received, now)
            row = await conn.fetchrow(
                _INSERT_OR_LOCK, d.key, d.type.name, d.severity.name, d.response.name, d.device_ids, unit_id,
                region, to_dt(d.ts_ms), d.rule, dumps(d.evidence), to_dt(now), *report,
            )
            if row is None:  # late for a closed alarm of its key, or held by a resolved incident
                closed = await conn.fetchrow(_LATEST_CLOSED, d.key, d.type.name, to_dt(d.ts_ms))
                if closed is not None and await conn.fetchval(_IS_LATE, closed["alarm_id"], *report):
                    return late_change(Alarm.from_record(closed), d, received)
                holding = await conn.fetchrow(_HOLDING, d.key, d.type.name, d.device_ids, dumps(d.evidence))
                if holding is not None:
                    detail = {**_raised_detail(d), "alarm_key": d.key, "type": d.type.name, "device_ids": d.device_ids}
                    return Change(Alarm.from_record(holding), HELD_REPORT, detail)
                return None if closed is None else late_change(Alarm.from_record(closed), d, received)
            alarm = Alarm.from_record(row)
            if row["inserted"]:
                level = alarm.escalation_level if alarm.response != "none" else None
                raised = Change(alarm, "raised", _raised_detail(d), notify_level=level)
                await self._join(conn, raised)
                if is_incident(d):
                    await self._adopt(conn, raised, now)
                return raised
            change = fold(alarm, d, now)
            if change is None and not await conn.fetchval(_IS_LATE, alarm.alarm_id, *report):
                change = fold(alarm, d, now, fresh=True)
            return change or late_change(alarm, d, received)
        if d.action == "clear":
            row = await conn.fetchrow(
                "SELECT * FROM alarms WHERE alarm_key = $1 AND type = $2 AND status = ANY($3::text[]) FOR UPDATE",
                d.key, d.type.name, list(OPEN_STATUSES),
            )
            if row is None:
                return await self._release(conn, d)
            alarm = Alarm.from_record(row)
            cleared = clear(alarm, d)
            if cleared is None and alarm.status in ACTIVE_STATUSES:  # older than the alarm's newest raise
                return late_change(alarm, d, received)
            return cleared
        raise ValueError(f"unknown decision action {d.action!r}")

    # --- incidents (CONTRACT §8) --------------------------------------------------------------
    async def _join(self, conn: asyncpg.Connection, change: Change) -> None:
        """A new alarm born a child (`_NEW_ALARM` found its open parent): no notification of its
        own, and the parent counts it (`child_added` on its timeline). Should the parent have
        closed meanwhile (another process; the insert saw it open), the alarm stands alone."""
        child = change.alarm
        if child.parent_id is None:
            return
        row = await conn.fetchrow(_ADD_CHILDREN, child.parent_id, [child.alarm_id])
        if row is None:
            await conn.execute("UPDATE alarms SET parent_id = NULL WHERE alarm_id = $1", child.alarm_id)
            child.parent_id = None
            if change.event_id:  # the raise's own snapshot, written with the insert
                await conn.execute("UPDATE alarm_events SET snapshot = snapshot || '{\"parent_id\": null}'"
                                   " WHERE event_id = $1", change.event_id)
            return
        change.notify_level = None
        detail = {"child_id": str(child.alarm_id), "type": child.type, "device_ids": child.device_ids}
        change.then.append(Change(Alarm.from_record(row), "child_added", detail))

    async def _adopt(self, conn: asyncpg.Connection, change: Change, now: int) -> None:
        """A new incident's parent adopts its unit's open fire-class device alarms (`linked` on
        each child's timeline); their notifications still queued are skipped."""
        parent = change.alarm
        rows = await conn.fetch(_ADOPT, parent.alarm_id, parent.unit_id)
        if not rows:
            return
        children = sorted((Alarm.from_record(r) for r in rows), key=lambda a: a.alarm_id)
        parent.children = [c.alarm_id for c in children]
        await conn.execute(_ADD_CHILDREN, parent.alarm_id, parent.children)
        await outbox.skip_queued(conn, parent.children, to_dt(now))
        change.detail["children"] = [str(c) for c in parent.children]
        change.then += [Change(c, "linked", {"parent_id": str(parent.alarm_id)}) for c in children]

    async def _release(self, conn: asyncpg.Connection, d: Decision) -> Change | None:
        """A fire-class clear of a detector without an open alarm: resolved parents that held it
        let it go (`hold_released` on their timeline); None when none did."""
        if d.type.name not in FIRE_CLASS_NAMES or not d.key.startswith(DEVICE_KEY):
            return None
        device = d.key[len(DEVICE_KEY):]
        changes = [Change(Alarm.from_record(r), HOLD_RELEASED, {"device_id": device, "ts": rfc3339(d.ts_ms),
                                                                "rule": d.rule, "type": d.type.name})
                   for r in await conn.fetch(_RELEASE, device)]
        if not changes:
            return None
        changes[0].then = changes[1:]
        return changes[0]

    async def _cascade(
        self, conn: asyncpg.Connection, change: Change, now: int, changes: list[tuple[Change, int | None]],
        taken: list[tuple[tuple[str, str], Repeats]],
    ) -> None:
        """Acknowledging or resolving a parent does the same to its open children (after their
        coalesced repeats), in its transaction; a resolved parent holds the detectors of the
        children still in alarm. The children's changes follow the parent's (`then`)."""
        parent = change.alarm
        if change.action not in ("acked", "resolved") or not parent.children:
            return
        select = "SELECT * FROM alarms WHERE parent_id = $1 AND status = ANY($2::text[]) ORDER BY alarm_id"
        for row in await conn.fetch(select, parent.alarm_id, list(OPEN_STATUSES)):
            key = (row["alarm_key"], row["type"])
            pending = self._repeats.get(key)
            if pending is not None and pending.alarm_id == row["alarm_id"]:
                await self._flush_key(conn, key, now, changes, taken)
        children = [Alarm.from_record(r) for r in await conn.fetch(select + " FOR UPDATE", parent.alarm_id,
                                                                     list(OPEN_STATUSES))]
        change.then = [c for c in (for_child(change, child, now) for child in children) if c is not None]
        change.detail["children"] = [str(c.alarm.alarm_id) for c in change.then]
        if change.action == "resolved":
            held = held_devices(children)
            change.detail["held_devices"] = held
            await conn.execute("UPDATE alarms SET held_devices = $2 WHERE alarm_id = $1", parent.alarm_id, held)

    def _place(self, d: Decision) -> tuple[str | None, str]:
        """Unit and region of a decision from the fleet ('' region: look the unit up in the registry)."""
        fleet = self.fleet
        unit_id = d.unit_id
        units: list[int] = []
        if unit_id is not None:
            units.append(fleet.units.get(unit_id))
        else:
            for device_id in d.device_ids:
                slot = fleet.slot(device_id)
                if slot >= 0 and fleet.unit[slot] >= 0:
                    units.append(int(fleet.unit[slot]))
            if units and all(u == units[0] for u in units):
                unit_id = fleet.units.names[units[0]]
        regions = [
            fleet.regions.names[int(fleet.unit_region[u])] for u in units if u >= 0 and fleet.unit_region[u] >= 0
        ]
        return unit_id, common_region(regions)

    def _pending_json(self, d: Decision) -> dict[str, Any]:
        """The alarm a raise would open, without an id (shown while the database is unavailable)."""
        return {**new_alarm(d, 0, *self._place(d), self.clock()).to_json(), "alarm_id": None}

    # --- operators -----------------------------------------------------------------------
    async def clear_flooding(self, slot: int, actor: str, note: str | None) -> bool:
        """Lift a device's flooding mark; answer whether it was marked. Audited in `device_audit`
        and cleared in the saved live state in one transaction, then in the fleet; only a new
        full window above the rate marks it again."""
        if not int(self.fleet.flags[slot]) & FLOODING:
            return False
        device_id = self.fleet.device_ids[slot]
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_DEVICE_AUDIT, device_id, "flooding_cleared", actor, dumps({"note": note}))
            await conn.execute(
                "UPDATE device_state SET flags = flags & ~$2::integer, updated_at = now() WHERE device_id = $1",
                device_id, FLOODING,
            )
        self.fleet.set_flooding(slot, False)
        self.flood.forget(device_id)
        return True

    async def acknowledge(self, alarm_id: int, actor: str, sees: RegionFilter | None = None) -> Alarm:
        """Acknowledge; raises AlarmNotFound (also when outside `sees`) or InvalidTransition."""
        change = await self._operate(alarm_id, sees, lambda a, now: ack_change(a, actor, now))
        if self.metrics:
            acked_after_ms = (change.alarm.acked_at_ms or 0) - change.alarm.created_at_ms
            self.metrics.ack_seconds.observe(max(0, acked_after_ms) / 1000)
        return change.alarm

    async def resolve(
        self, alarm_id: int, classification: str, note: str | None, actor: str, sees: RegionFilter | None = None
    ) -> Alarm:
        """Resolve with a classification; raises AlarmNotFound, InvalidTransition or ValueError."""
        change = await self._operate(alarm_id, sees, lambda a, now: resolve_change(a, classification, note, actor, now))
        return change.alarm

    async def _operate(
        self, alarm_id: int, sees: RegionFilter | None, transition: Callable[[Alarm, int], Change]
    ) -> Change:
        """An operator's transition, after the coalesced repeats of the alarm."""
        taken: list[tuple[tuple[str, str], Repeats]] = []
        select = "SELECT * FROM alarms WHERE alarm_id = $1 FOR UPDATE"
        try:
            async with self._committing() as (conn, now, changes):
                row = await conn.fetchrow(select, alarm_id)
                if row is None or (sees is not None and not sees(row["region"])):
                    raise AlarmNotFound(alarm_id)
                key = (row["alarm_key"], row["type"])
                pending = self._repeats.get(key)
                if pending is not None and pending.alarm_id == alarm_id:
                    await self._flush_key(conn, key, now, changes, taken)
                    row = await conn.fetchrow(select, alarm_id)
                change = transition(Alarm.from_record(row), now)
                await self._cascade(conn, change, now, changes, taken)
                await self._save(conn, change, now)
                changes.append((change, None))
        except BaseException:
            self._restore(taken)
            raise
        return change

    async def act(
        self,
        alarm_id: int,
        step: Callable[[asyncpg.Connection, Alarm, int], Awaitable[Change | None]],
        then: Callable[[asyncpg.Connection, Change], Awaitable[None]] | None = None,
    ) -> Change | None:
        """Record what a person did about an alarm besides an operator's transition (a responder's
        ack, arrival or feedback; a dispatch): with the alarm row locked, `step` writes its own rows
        and answers the audit change (None: nothing to record, e.g. a repeat); the audit row reaches
        the stream like any change; `then` runs after it in the same transaction (its event id
        known). Raises AlarmNotFound, or what `step` raises. The notifier is woken afterwards."""
        async with self._committing() as (conn, now, changes):
            row = await conn.fetchrow("SELECT * FROM alarms WHERE alarm_id = $1 FOR UPDATE", alarm_id)
            if row is None:
                raise AlarmNotFound(alarm_id)
            change = await step(conn, Alarm.from_record(row), now)
            if change is not None:
                await self._save(conn, change, now)
                if then is not None:
                    await then(conn, change)
                changes.append((change, None))
        if change is not None and self.notifier is not None:
            self.notifier.wake()
        return change

    # --- timers --------------------------------------------------------------------------
    async def tick(self, now_ms: int) -> None:
        """Apply due timers: the 60 s upgrade of unacknowledged verify fire alarms, escalation."""
        esc = self.escalation_ms
        rows = await self.pool.fetch(
            """SELECT * FROM alarms WHERE status = 'active_unack' AND parent_id IS NULL AND (
                   (escalation_level < CASE WHEN severity IN ('minor', 'warning') THEN 0
                                            WHEN type = ANY($7::text[]) THEN $1 ELSE 1 END  -- targets.max_level
                    AND (held_until IS NULL OR held_until <= $6)
                    AND ((response = 'immediate' AND escalated_at <= $2)
                         OR (response = 'verify' AND escalated_at <= $3)))
                   OR (response = 'verify' AND type = ANY($4::text[]) AND active_since <= $5))
               ORDER BY alarm_id""",
            MAX_LEVEL, to_dt(now_ms - esc.get("immediate", 0)), to_dt(now_ms - esc.get("verify", 0)),
            list(FIRE_CLASS_NAMES), to_dt(now_ms - self.unacked_upgrade_ms), to_dt(now_ms), sorted(CLIMBING_TYPES),
        )
        for row in rows:
            if self._timer_changes(Alarm.from_record(row), now_ms, _held_ms(row)):
                await self._apply_timers(row["alarm_id"], now_ms)

    def _timer_changes(self, alarm: Alarm, now_ms: int, held_until_ms: int | None = None) -> list[Change]:
        changes: list[Change] = []
        upgraded = upgrade_unacked(alarm, now_ms, self.unacked_upgrade_ms, self._flapping(alarm))
        if upgraded is not None:
            changes.append(upgraded)
            alarm = upgraded.alarm
        escalated = escalate(alarm, now_ms, self.escalation_ms, held_until_ms)
        if escalated is not None:
            changes.append(escalated)
        return changes

    def _flapping(self, alarm: Alarm) -> bool:
        if not alarm.alarm_key.startswith("device:"):
            return False
        slots = [self.fleet.slot(d) for d in alarm.device_ids]
        return any(s >= 0 and int(self.fleet.flags[s]) & FLAPPING for s in slots)

    async def _apply_timers(self, alarm_id: int, now_ms: int) -> None:
        async with self._committing() as (conn, _, committed):
            row = await conn.fetchrow("SELECT * FROM alarms WHERE alarm_id = $1 FOR UPDATE", alarm_id)
            due = [] if row is None else self._timer_changes(Alarm.from_record(row), now_ms, _held_ms(row))
            for change in due:
                await self._save(conn, change, now_ms)
                committed.append((change, None))

    # --- shared --------------------------------------------------------------------------
    async def _save(self, conn: asyncpg.Connection, change: Change, now_ms: int) -> None:
        """Write the alarm and its audit row (one round trip); the row's id is the stream event id."""
        a = change.alarm
        event = (to_dt(now_ms), change.action, change.actor, dumps(change.detail), dumps(a.to_json()))
        if change.action == "raised":  # the row was just inserted as it stands
            change.event_id = await conn.fetchval(_RAISED_EVENT, a.alarm_id, *event)
        else:
            change.event_id = await self._update(conn, a, event)
        await self._queue(conn, change, now_ms)
        for then in change.then:
            await self._save(conn, then, now_ms)

    async def _queue(self, conn: asyncpg.Connection, change: Change, now_ms: int) -> None:
        """The notifications of a change that reached a level, in its transaction (`response.outbox`)."""
        a = change.alarm
        if change.notify_level is None:
            return
        await outbox.queue(
            conn, alarm_id=a.alarm_id, event_id=change.event_id or None,
            facts=AlarmFacts(a.type, a.severity, a.response, a.unit_id, a.region),
            levels=levels_due(change.told_level, change.notify_level),
            upgrade_level=change.notify_level if change.upgrade else None, now=to_dt(now_ms), tz=self.tz,
        )

    @staticmethod
    async def _update(conn: asyncpg.Connection, a: Alarm, event: tuple[Any, ...]) -> int:
        return await conn.fetchval(
            _UPDATE_AND_EVENT, a.alarm_id, a.severity, a.response, a.status, a.device_ids, a.unit_id, a.region,
            to_dt(a.last_seen_ms), a.count, a.rule, dumps(a.evidence), a.escalation_level,
            _opt_dt(a.escalated_at_ms), a.classification, a.note, a.acked_by, _opt_dt(a.acked_at_ms),
            _opt_dt(a.cleared_at_ms), a.resolved_by, _opt_dt(a.resolved_at_ms), *event, to_dt(a.active_since_ms),
            float(IMMEDIATE_HOLD_S),
        )

    def _committed(self, change: Change, received_ms: int | None) -> None:
        self._publish(change, received_ms)
        for then in change.then:
            self._committed(then, None)

    def _publish(self, change: Change, received_ms: int | None) -> None:
        self._remember(change.alarm)
        alarm = change.alarm.to_json()
        self.hub.publish(change.event_id, alarm)
        if change.notify_level is not None and self.notifier is not None:
            self.notifier.wake()
        if change.action == LATE_REPORT:
            self._late(change)
        m = self.metrics
        if m is None:
            return
        m.changes.labels(change.action).inc()
        if change.action == "raised":
            m.raised.labels(alarm["type"], alarm["response"]).inc()
        elif change.folded:
            m.folded.labels(alarm["type"]).inc()
        elif change.action == "escalated":
            m.escalations.labels(str(change.alarm.escalation_level)).inc()
        if received_ms is not None:
            m.stream_latency.observe(max(0, self.clock() - received_ms) / 1000)

    def _remember(self, a: Alarm) -> None:
        """Keep the open alarm of a committed change for recognising its repeats (with the newest
        last_seen of the repeats coalesced since; without evidence, which decides nothing there);
        forget it once cleared or closed."""
        key = (a.alarm_key, a.type)
        known = self._open.get(key)
        if a.status not in ACTIVE_STATUSES:
            if known is not None and known.alarm_id == a.alarm_id:
                del self._open[key]
            return
        newest = a.last_seen_ms
        if known is not None and known.alarm_id == a.alarm_id:
            newest = max(newest, known.last_seen_ms)
        self._open[key] = replace(a, last_seen_ms=newest, evidence=[])
        self._open.move_to_end(key)
        if len(self._open) > OPEN_CACHE:
            self._open.popitem(last=False)

    def _late(self, change: Change) -> None:
        """A report judged late: counted by type and decision, and logged (a fire-class one as a warning)."""
        a, detail = change.alarm, change.detail
        level = logging.WARNING if a.type in FIRE_CLASS_NAMES else logging.INFO
        log.log(level, "late %s of %s/%s (device time %s, received %s) recorded on alarm %d (state %s)",
                detail["decision"], a.alarm_key, a.type, detail["ts"], detail["received"], a.alarm_id, detail["state"])
        if self.metrics:
            self.metrics.late.labels(a.type, detail["decision"]).inc()

"""The alarm object's v2 additions (CONTRACT §5, §9): `unit`, `devices`, `response_times` and,
on the detail route, the `timeline` merged from the audit rows and the notifications sent.

`extras` reads them for a page of alarms in one query (units and devices joined, response
times from `notifications` and `responder_actions` by their alarm indexes), so list routes make
two round trips whatever their length. Response times are seconds from `raised_at` (the
service time the alarm was stored) to the first notification sent, the first acknowledgement
(an operator's or a responder's), the first arrival on site and the resolution; null until then.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

#: seconds from the alarm's raise (`a.created_at`) to each first; shared with the statistics
RESPONSE_TIMES_SQL = {
    "notified_s": "(SELECT min(n.sent_at) FROM notifications n WHERE n.alarm_id = a.alarm_id)",
    "acked_s": "least(a.acked_at, (SELECT min(r.at) FROM responder_actions r"
               " WHERE r.alarm_id = a.alarm_id AND r.action = 'ack'))",
    "arrived_s": "(SELECT min(r.at) FROM responder_actions r WHERE r.alarm_id = a.alarm_id AND r.action = 'arrive')",
    "resolved_s": "a.resolved_at",
}
RESPONSE_TIMES = tuple(RESPONSE_TIMES_SQL)


def seconds_sql(name: str) -> str:
    """The SQL of one response time in seconds (null until it happens) of alarm row `a`."""
    return f"extract(epoch FROM {RESPONSE_TIMES_SQL[name]} - a.created_at)::float8"


_EXTRAS = f"""
SELECT a.alarm_id, u.unit_id, u.name, u.address, u.region, u.industry, u.contacts, u.location,
       (SELECT coalesce(jsonb_agg(jsonb_build_object('device_id', i.id, 'kind', d.kind, 'location', d.location)
                                  ORDER BY i.n), '[]')
          FROM unnest(a.device_ids) WITH ORDINALITY AS i (id, n) LEFT JOIN devices d ON d.device_id = i.id) AS devices,
       {", ".join(f"{seconds_sql(n)} AS {n}" for n in RESPONSE_TIMES)}
  FROM alarms a LEFT JOIN units u ON u.unit_id = a.unit_id
 WHERE a.alarm_id = ANY($1::bigint[])
"""

#: contact fields shown only to operators and admins (CONTRACT §9: unit contacts' phone numbers)
PRIVATE_CONTACT_FIELDS = frozenset({"phone", "mobile", "tel"})
#: contact fields shown only to admins: a v1 webhook URL is an outbound target's secret
ADMIN_CONTACT_FIELDS = frozenset({"webhook"})


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def contacts_for(contacts: Any, *, phones: bool, admin: bool = False) -> list[Any]:
    """A unit's contacts as the caller may see them: without phone numbers unless `phones`."""
    hidden = (set() if phones else PRIVATE_CONTACT_FIELDS) | (set() if admin else ADMIN_CONTACT_FIELDS)
    return [
        {k: v for k, v in c.items() if k not in hidden} if isinstance(c, dict) else c
        for c in (_loads(contacts) or [])
    ]


def _round(value: float | None) -> float | None:
    return None if value is None else round(max(0.0, value), 3)


def from_row(row: Mapping[str, Any], *, phones: bool, admin: bool = False) -> dict[str, Any]:
    """The additions of one alarm from its `_EXTRAS` row."""
    unit = None
    if row["unit_id"] is not None:
        unit = {
            "unit_id": row["unit_id"], "name": row["name"], "address": row["address"], "region": row["region"],
            "industry": row["industry"], "contacts": contacts_for(row["contacts"], phones=phones, admin=admin),
            "location": _loads(row["location"]),
        }
    return {
        "unit": unit,
        "devices": _loads(row["devices"]) or [],
        "response_times": {n: _round(row[n]) for n in RESPONSE_TIMES},
    }


async def extras(
    pool: asyncpg.Pool | asyncpg.Connection, alarm_ids: Sequence[int], *, phones: bool, admin: bool = False
) -> dict[int, dict[str, Any]]:
    """The additions of these alarms, by alarm id (one query)."""
    if not alarm_ids:
        return {}
    rows = await pool.fetch(_EXTRAS, list(alarm_ids))
    return {r["alarm_id"]: from_row(r, phones=phones, admin=admin) for r in rows}


async def with_extras(
    pool: asyncpg.Pool | asyncpg.Connection, alarms: Sequence[dict[str, Any]], *, phones: bool, admin: bool = False
) -> list[dict[str, Any]]:
    """Alarm objects (`Alarm.to_json`) with their additions."""
    found = await extras(pool, [int(a["alarm_id"]) for a in alarms], phones=phones, admin=admin)
    return [{**a, **found.get(int(a["alarm_id"]), {})} for a in alarms]


def _rfc3339(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


#: timeline action of a notification by its state (else `notified`); `skipped`: its alarm joined an incident
_NOTIFICATION_ACTIONS = {"failed": "notification_failed", "skipped": "notification_skipped"}


async def notification_entries(pool: asyncpg.Pool | asyncpg.Connection, alarm_id: int) -> list[dict[str, Any]]:
    """Timeline entries of the alarm's notifications that were sent, failed or skipped (queued
    ones have not happened yet): action `notified`, `notification_failed` or
    `notification_skipped`, actor the system."""
    rows = await pool.fetch(
        """SELECT coalesce(sent_at, done_at, created_at) AS at, state, level, reason, responder_id, group_channel,
                  channel, error_class
             FROM notifications WHERE alarm_id = $1 AND state <> 'queued' ORDER BY id""",
        alarm_id,
    )
    entries = []
    for r in rows:
        to = f"responder:{r['responder_id']}" if r["responder_id"] else f"group:{r['group_channel']}"
        detail = {"recipient": to, "channel": r["channel"], "level": r["level"], "reason": r["reason"]}
        if r["state"] in ("failed", "skipped"):
            detail["error_class"] = r["error_class"]
        entries.append({
            "event_id": None, "at": _rfc3339(r["at"]), "action": _NOTIFICATION_ACTIONS.get(r["state"], "notified"),
            "actor": "system", "detail": detail,
        })
    return entries


def merged(events: list[dict[str, Any]], notified: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Audit entries and notification entries in time order (an audit entry first at equal times)."""
    keyed = [(e["at"] or "", 0, i, e) for i, e in enumerate(events)]
    keyed += [(e["at"] or "", 1, i, e) for i, e in enumerate(notified)]
    return [e for *_, e in sorted(keyed, key=lambda k: k[:3])]

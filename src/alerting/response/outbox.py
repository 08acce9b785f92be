"""The notifications an alarm change makes due, written in the change's own transaction.

The lifecycle calls `queue` inside the transaction that writes the alarm and its audit row: the
responders `targets` selects get one `notifications` row per (alarm, responder, level, reason)
(the unique index makes a repeat a no-op), and when the response became `immediate` everyone
already told gets one `upgrade` row. `alerting.response.notifier` sends them. `skip_queued`
ends the queued rows of alarms that became an incident's children.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

import asyncpg

from alerting.response.targets import AlarmFacts, Responder, Window, targets

#: responders who might cover an alarm of unit $1, region $2 (targets.py decides exactly)
_CANDIDATES = """
SELECT responder_id, role, regions, unit_ids, on_duty FROM responders
 WHERE deleted_at IS NULL
   AND ((cardinality(regions) = 0 AND cardinality(unit_ids) = 0) OR $1 = ANY(unit_ids)
        OR EXISTS (SELECT 1 FROM unnest(regions) p
                    WHERE rtrim(p, '/') = '' OR $2 = rtrim(p, '/') OR starts_with($2, rtrim(p, '/') || '/')))
"""
_INSERT = """
INSERT INTO notifications (alarm_id, event_id, level, reason, responder_id)
SELECT $1, $2, t.level, t.reason, t.responder_id
  FROM unnest($3::text[], $4::smallint[], $5::text[]) AS t (responder_id, level, reason)
ON CONFLICT DO NOTHING
"""
#: one `upgrade` row, at the level reached, to each responder and group already sent a message
_UPGRADE = """
INSERT INTO notifications (alarm_id, event_id, level, reason, responder_id, group_channel)
SELECT DISTINCT $1::bigint, $2::bigint, $3::smallint, 'upgrade', responder_id, group_channel
  FROM notifications
 WHERE alarm_id = $1 AND reason <> 'upgrade' AND state IN ('sent', 'acked') AND digest_of IS NULL
ON CONFLICT DO NOTHING
"""


#: the queued notifications of alarms $1 are not sent (done at $2)
_SKIP = """UPDATE notifications SET state = 'skipped', error_class = 'incident', done_at = $2
            WHERE alarm_id = ANY($1::bigint[]) AND state = 'queued'"""


def responder_from(row: asyncpg.Record) -> Responder:
    on_duty = row["on_duty"]
    on_duty = json.loads(on_duty) if isinstance(on_duty, str) else on_duty
    windows = None if on_duty is None else tuple(Window.parse(w) for w in on_duty)
    return Responder(row["responder_id"], row["role"], tuple(row["regions"]), tuple(row["unit_ids"]), windows)


async def queue(
    conn: asyncpg.Connection, *, alarm_id: int, event_id: int | None, facts: AlarmFacts, levels: Iterable[int],
    upgrade_level: int | None, now: datetime, tz: ZoneInfo,
) -> int:
    """Write the notifications of a change (in the caller's transaction); answer how many rows
    the selection proposed. `upgrade_level`: the response became immediate at that level."""
    if upgrade_level is not None:
        await conn.execute(_UPGRADE, alarm_id, event_id, upgrade_level)
    rows = await conn.fetch(_CANDIDATES, facts.unit_id, facts.region)
    chosen = targets(facts, levels, [responder_from(r) for r in rows], now.astimezone(tz))
    if chosen:
        await conn.execute(_INSERT, alarm_id, event_id, [t.responder_id for t in chosen], [t.level for t in chosen],
                           [t.reason for t in chosen])
    return len(chosen)


async def skip_queued(conn: asyncpg.Connection, alarm_ids: list[int], now: datetime) -> None:
    """Alarms that joined an incident send nothing more of their own (CONTRACT §8 Incidents):
    their notifications still queued end `skipped` (error class `incident`), in the caller's
    transaction; people are told about the incident's parent."""
    await conn.execute(_SKIP, alarm_ids, now)

"""Linkage tables (migrations/0024): units' policies (`unit_linkage`), the commands sent or
offered for alarms (`alarm_linkage`, one row per alarm and command) and the runner's place in the
alarm event stream (`linkage_progress`). This module owns the three; the rest is reads."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any, TypeAlias

import asyncpg

from alerting.linkage.policy import Action, UnitPolicy, in_force
from alerting.model import ACTIVE_STATUSES, OPEN_STATUSES

Db: TypeAlias = asyncpg.Pool | asyncpg.Connection
#: How far back a device's reported valve or breaker state is looked for.
REPORTED_WITHIN = timedelta(days=30)


def _policy(row: asyncpg.Record | None) -> UnitPolicy:
    if row is None or row["gas_valve"] is None:
        return UnitPolicy()
    return UnitPolicy(row["gas_valve"], row["breaker"], row["charger_port"])


async def unit_industry(db: Db, unit_id: str) -> tuple[bool, str | None]:
    """(whether the unit exists, its industry)."""
    row = await db.fetchrow("SELECT industry FROM units WHERE unit_id = $1", unit_id)
    return (row is not None, None if row is None else row["industry"])


async def get_policy(db: Db, unit_id: str) -> UnitPolicy:
    return _policy(await db.fetchrow("SELECT * FROM unit_linkage WHERE unit_id = $1", unit_id))


async def save_policy(db: Db, unit_id: str, policy: UnitPolicy, by: str) -> None:
    await db.execute(
        """INSERT INTO unit_linkage (unit_id, gas_valve, breaker, charger_port, updated_by) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (unit_id) DO UPDATE SET gas_valve = EXCLUDED.gas_valve, breaker = EXCLUDED.breaker,
               charger_port = EXCLUDED.charger_port, updated_by = EXCLUDED.updated_by, updated_at = now()""",
        unit_id, policy.gas_valve, policy.breaker, policy.charger_port, by,
    )


async def device_context(db: Db, device_id: str) -> tuple[asyncpg.Record, UnitPolicy] | None:
    """A device's kind, linkage setting and unit, with its unit's policy as in force; None when unknown."""
    row = await db.fetchrow(
        """SELECT d.device_id, d.kind, d.linkage, d.unit_id, u.industry, l.gas_valve, l.breaker, l.charger_port
             FROM devices d LEFT JOIN units u USING (unit_id) LEFT JOIN unit_linkage l USING (unit_id)
            WHERE d.device_id = $1""",
        device_id,
    )
    return None if row is None else (row, in_force(_policy(row), row["industry"]))


async def reported(db: Db, device_id: str, metric: str, now: datetime) -> str | None:
    """The newest value of `metric` the device reported in the last `REPORTED_WITHIN`."""
    return await db.fetchval(
        """SELECT metrics ->> $2 FROM readings WHERE device_id = $1 AND ts >= $3 AND ts <= $4 AND metrics ? $2
           ORDER BY ts DESC LIMIT 1""",
        device_id, metric, now - REPORTED_WITHIN, now + timedelta(days=1),
    )


async def record(
    conn: asyncpg.Connection, alarm_id: int, device_id: str, action: Action, cmd_id: uuid.UUID | None, now: datetime
) -> bool:
    """Record a linkage command sent (`auto`, with its id) or offered (`confirm`); False when
    this alarm already has this command (once per alarm)."""
    state = "sent" if action.mode == "auto" else "offered"
    done = await conn.fetchval(
        """INSERT INTO alarm_linkage (alarm_id, cmd, device_id, params, mode, state, cmd_id, sent_by, created_at,
                                      updated_at)
           VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9, $9) ON CONFLICT DO NOTHING RETURNING true""",
        alarm_id, action.cmd, device_id, json.dumps(action.params), action.mode, state, cmd_id,
        "linkage" if cmd_id else None, now,
    )
    return bool(done)


async def unsent(db: Db, alarm_id: int, cmd: str) -> uuid.UUID | None:
    """The id of the alarm's linkage command recorded as sent but never stored as a command (its
    sending failed): to send again."""
    return await db.fetchval(
        """SELECT l.cmd_id FROM alarm_linkage l WHERE l.alarm_id = $1 AND l.cmd = $2 AND l.state = 'sent'
              AND l.cmd_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM commands c WHERE c.cmd_id = l.cmd_id)""",
        alarm_id, cmd,
    )


async def take_offer(
    conn: asyncpg.Connection, alarm_id: int, cmd: str | None, cmd_id: uuid.UUID, by: str, now: datetime
) -> asyncpg.Record | None:
    """Mark the alarm's offered command (`cmd`, or its only one) sent by `by`; None when none is offered."""
    return await conn.fetchrow(
        """UPDATE alarm_linkage SET state = 'sent', cmd_id = $3, sent_by = $4, updated_at = $5
            WHERE (alarm_id, cmd) = (SELECT alarm_id, cmd FROM alarm_linkage WHERE alarm_id = $1 AND state = 'offered'
                                       AND ($2::text IS NULL OR cmd = $2) ORDER BY cmd LIMIT 1)
           RETURNING alarm_id, cmd, device_id, params""",
        alarm_id, cmd, cmd_id, by, now,
    )


async def offers(db: Db, alarm_id: int) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT cmd, device_id, params FROM alarm_linkage WHERE alarm_id = $1 AND state = 'offered' ORDER BY cmd",
        alarm_id,
    )


async def for_alarm(db: Db, alarm_id: int) -> list[dict[str, Any]]:
    """The alarm's linkage commands and offers, oldest first."""
    rows = await db.fetch(
        "SELECT * FROM alarm_linkage WHERE alarm_id = $1 ORDER BY created_at, cmd", alarm_id
    )
    return [{"cmd": r["cmd"], "device_id": r["device_id"], "params": json.loads(r["params"]), "mode": r["mode"],
             "state": r["state"], "cmd_id": None if r["cmd_id"] is None else str(r["cmd_id"]), "sent_by": r["sent_by"],
             "created_at": r["created_at"], "updated_at": r["updated_at"]} for r in rows]


async def result(db: Db, cmd_id: uuid.UUID, state: str, now: datetime) -> asyncpg.Record | None:
    """Record a linkage command's end; answer its row with the state it had (`was`), None when
    `cmd_id` is no linkage command."""
    return await db.fetchrow(
        """WITH old AS (SELECT alarm_id, cmd, state FROM alarm_linkage WHERE cmd_id = $1 FOR UPDATE)
           UPDATE alarm_linkage l SET state = $2, updated_at = $3 FROM old
            WHERE l.alarm_id = old.alarm_id AND l.cmd = old.cmd
           RETURNING l.alarm_id, l.cmd, l.device_id, old.state AS was, l.created_at""",
        cmd_id, state, now,
    )


async def failing(db: Db) -> list[asyncpg.Record]:
    """Failed linkage commands whose device's `linkage_failed` alarm is still active."""
    return await db.fetch(
        f"""SELECT l.device_id, l.cmd, l.created_at, a.unit_id FROM alarm_linkage l
              JOIN alarms a ON a.alarm_key = 'device:' || l.device_id AND a.type = 'linkage_failed'
                           AND a.status IN ({", ".join(f"'{s}'" for s in ACTIVE_STATUSES)})
             WHERE l.state IN ('failed', 'timeout')"""
    )


async def state_seen(db: Db, device_id: str, event: str, since: datetime) -> bool:
    """Whether the device reported `event` (received) since `since`."""
    return bool(await db.fetchval(
        """SELECT true FROM readings WHERE device_id = $1 AND event = $2 AND ts >= $3::timestamptz - interval '1 day'
             AND received_at >= $3 LIMIT 1""",
        device_id, event, since,
    ))


async def holding(db: Db, device_id: str, forward: str) -> list[int]:
    """Open alarms whose linkage sent `forward` (e.g. `valve_close`) to the device."""
    rows = await db.fetch(
        """SELECT l.alarm_id FROM alarm_linkage l JOIN alarms a USING (alarm_id)
            WHERE l.device_id = $1 AND l.cmd = $2 AND l.state <> 'offered' AND a.status = ANY($3::text[])
            ORDER BY l.alarm_id""",
        device_id, forward, list(OPEN_STATUSES),
    )
    return [r["alarm_id"] for r in rows]


async def progress(db: Db) -> int:
    """The newest alarm event looked at; at the first start, the newest event there is."""
    saved = await db.fetchval("SELECT last_event_id FROM linkage_progress")
    if saved is not None:
        return int(saved)
    return int(await db.fetchval("SELECT coalesce(max(event_id), 0) FROM alarm_events"))


async def save_progress(db: Db, event_id: int) -> None:
    await db.execute(
        """INSERT INTO linkage_progress (last_event_id) VALUES ($1)
           ON CONFLICT (id) DO UPDATE SET last_event_id = greatest(linkage_progress.last_event_id, $1)""",
        event_id,
    )

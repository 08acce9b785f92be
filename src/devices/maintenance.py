"""Maintenance with an end (CONTRACT §11): `until` (default 24 h, at most 7 days ahead), a
reason and who set it, audited (`device_audit` for a device, `unit_audit` for a unit), ending by
itself when `expire` finds it past `until`. The live fleet flags are the caller's to change."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

DEFAULT_SPAN = timedelta(hours=24)
MAX_SPAN = timedelta(days=7)


class BadUntil(ValueError):
    """An `until` in the past or more than 7 days ahead (422)."""


def until_for(now: datetime, until: datetime | None) -> datetime:
    """When maintenance switched on at `now` ends: `until`, or 24 h on; `BadUntil` when `until` is
    not after `now`, lacks a time zone, or lies more than 7 days ahead."""
    if until is None:
        return now + DEFAULT_SPAN
    if until.tzinfo is None:
        raise BadUntil("until 须带时区 (RFC 3339) / until needs a time zone offset (RFC 3339)")
    if until <= now:
        raise BadUntil("until 须在将来 / until must lie in the future")
    if until - now > MAX_SPAN:
        raise BadUntil("维护最长 7 天 / maintenance lasts at most 7 days (until beyond now + 7 d)")
    return until


@dataclass(frozen=True, slots=True)
class Maintenance:
    """A switch of maintenance: on with `until` and `reason`, or off (both None)."""

    on: bool
    until: datetime | None
    reason: str | None
    by: str

    def shown(self) -> dict[str, object]:
        return {"maintenance": self.on, "until": self.until, "reason": self.reason, "by": self.by}


def _detail(m: Maintenance) -> str:
    return json.dumps({"until": m.until.isoformat() if m.until else None, "reason": m.reason}, ensure_ascii=False)


_SET = """UPDATE {table} SET maintenance = $2, maintenance_until = $3, maintenance_reason = $4, maintenance_by = $5,
                     updated_at = now() WHERE {key} = $1 RETURNING true"""


async def _switch(pool: asyncpg.Pool, table: str, key: str, audit: str, ident: str, m: Maintenance) -> bool:
    """Switch one row's maintenance and audit it in the same transaction; False for an unknown row."""
    async with pool.acquire() as conn, conn.transaction():
        found = await conn.fetchval(_SET.format(table=table, key=key), ident, m.on, m.until, m.reason,
                                    m.by if m.on else None)
        if found:
            await conn.execute(
                f"INSERT INTO {audit} ({key}, action, actor, detail) VALUES ($1, $2, $3, $4::jsonb)",
                ident, "maintenance_on" if m.on else "maintenance_off", m.by, _detail(m))
    return bool(found)


async def set_device(pool: asyncpg.Pool, device_id: str, m: Maintenance) -> bool:
    """Switch a device's maintenance and audit it; False for an unknown device."""
    return await _switch(pool, "devices", "device_id", "device_audit", device_id, m)


async def set_unit(pool: asyncpg.Pool, unit_id: str, m: Maintenance) -> bool:
    """Switch a unit's maintenance and audit it; False for an unknown unit."""
    return await _switch(pool, "units", "unit_id", "unit_audit", unit_id, m)


@dataclass(frozen=True, slots=True)
class Expired:
    device_ids: Sequence[str]
    unit_ids: Sequence[str]


async def expire(pool: asyncpg.Pool, now: datetime) -> Expired:
    """End every maintenance whose `until` is not after `now`, audited with actor `system`."""
    async with pool.acquire() as conn, conn.transaction():
        devices = await conn.fetch(
            """UPDATE devices SET maintenance = false, updated_at = now()
                WHERE maintenance AND maintenance_until <= $1
               RETURNING device_id, maintenance_until, maintenance_by""", now)
        await conn.executemany(
            """INSERT INTO device_audit (device_id, action, actor, detail)
               VALUES ($1, 'maintenance_expired', 'system', $2::jsonb)""",
            [(r["device_id"], json.dumps({"until": r["maintenance_until"].isoformat(), "set_by": r["maintenance_by"]},
                                         ensure_ascii=False)) for r in devices])
        units = await conn.fetch(
            """UPDATE units SET maintenance = false, updated_at = now()
                WHERE maintenance AND maintenance_until <= $1
               RETURNING unit_id, maintenance_until, maintenance_by""", now)
        await conn.executemany(
            """INSERT INTO unit_audit (unit_id, action, actor, detail)
               VALUES ($1, 'maintenance_expired', 'system', $2::jsonb)""",
            [(r["unit_id"], json.dumps({"until": r["maintenance_until"].isoformat(), "set_by": r["maintenance_by"]},
                                       ensure_ascii=False)) for r in units])
    return Expired([r["device_id"] for r in devices], [r["unit_id"] for r in units])

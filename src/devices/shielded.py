"""Shielded panel points (屏蔽) of transmission devices (CONTRACT §4 status bit 3, §10): the one owner
of `panel_shields` (migrations 0017, 0023).

The GB/T 26875 mapping makes a point's shield bit the `shield` event of its component and the bit's
clearing `shield_clear`; `record` keeps them once the readings are written: a point is shielded
from the device time of its first `shield` until a `shield_clear`. A change older than the last
one applied to its point is ignored, so a late backlog never undoes a newer state.
`GET /api/v1/uitd/{device_id}/shielded` lists `open_points`; risk grading counts `points_per_unit`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from devices.catalogue import Event, Kind
from devices.reading import Reading


@dataclass(frozen=True, slots=True)
class ShieldChange:
    """A point shielded (`shielded`) or no longer, at device time `ts_ms`."""

    device_id: str
    point: str
    shielded: bool
    ts_ms: int
    description: str


def shield_changes(readings: Sequence[Reading]) -> list[ShieldChange]:
    """The shield changes of panel points (uitd components) in `readings`, in order."""
    return [
        ShieldChange(r.device_id, r.component, r.event is Event.shield, r.ts_ms, str(r.extra.get("description") or ""))
        for r in readings
        if (r.event is Event.shield or r.event is Event.shield_clear) and r.component is not None
        and r.kind is Kind.uitd
    ]


_SHIELD = """
INSERT INTO panel_shields AS s (device_id, component, since, description, changed_at) VALUES ($1, $2, $3, $4, $3)
ON CONFLICT (device_id, component) DO UPDATE
SET since = CASE WHEN s.cleared_at IS NULL THEN least(s.since, $3) ELSE $3 END,
    description = CASE WHEN $4 = '' THEN s.description ELSE $4 END, cleared_at = NULL,
    changed_at = greatest(s.changed_at, $3)
WHERE s.cleared_at IS NULL OR s.changed_at <= $3"""
_CLEAR = """
UPDATE panel_shields SET cleared_at = $3, changed_at = $3
WHERE device_id = $1 AND component = $2 AND cleared_at IS NULL AND changed_at <= $3"""


async def record(pool: asyncpg.Pool, readings: Sequence[Reading]) -> int:
    """Keep the shield changes of these written readings (usually none: one pass over them);
    answers how many there were."""
    changes = shield_changes(readings)
    if not changes:
        return 0
    async with pool.acquire() as conn, conn.transaction():
        for c in changes:
            at = datetime.fromtimestamp(c.ts_ms / 1000, UTC)
            if c.shielded:
                await conn.execute(_SHIELD, c.device_id, c.point, at, c.description)
            else:
                await conn.execute(_CLEAR, c.device_id, c.point, at)
    return len(changes)


async def open_points(pool: asyncpg.Pool, device_id: str) -> list[asyncpg.Record]:
    """The points of `device_id` shielded now (`component`, `since`, `description`), longest first."""
    return await pool.fetch(
        "SELECT component, since, description FROM panel_shields WHERE device_id = $1 AND cleared_at IS NULL "
        "ORDER BY since, component", device_id,
    )


async def every_open_point(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """Every point shielded now (`device_id`, `component`, `since`)."""
    return await pool.fetch("SELECT device_id, component, since FROM panel_shields WHERE cleared_at IS NULL")


async def points_per_unit(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, int]:
    """Unit id -> how many points of its devices are shielded now."""
    rows = await conn.fetch(
        "SELECT d.unit_id, count(*) AS points FROM panel_shields s JOIN devices d ON d.device_id = s.device_id "
        "WHERE s.cleared_at IS NULL AND d.unit_id IS NOT NULL GROUP BY d.unit_id"
    )
    return {r["unit_id"]: r["points"] for r in rows}

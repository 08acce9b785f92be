"""Shielded panel points (屏蔽, CONTRACT §4 status bit 3) of transmission devices.

The GB/T 26875 mapping reports a point's `shield` and `shield_clear` as `panel_changes` of a
status report (a change without a canonical event). `record` keeps them in `panel_shields`: the
composition root hands it the readings the listener submits. `GET /api/v1/uitd/{device_id}/shielded`
lists a device's shielded points; risk grading counts them per unit (docs/risk.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from fastapi import APIRouter, HTTPException

from alerting.api import Alarms
from devices import registry
from devices.auth import Viewer
from devices.reading import Reading

router = APIRouter(prefix="/api/v1", tags=["supervision"])


def shield_changes(readings: Sequence[Reading]) -> list[tuple[str, str, bool, int, str]]:
    """(device_id, point, shielded, ts_ms, description) of every shield change in `readings`."""
    out = []
    for r in readings:
        changes = r.extra.get("panel_changes") if r.extra else None
        if not changes or r.component is None:
            continue
        description = str(r.extra.get("description") or "")
        for change in changes:
            if change in ("shield", "shield_clear"):
                out.append((r.device_id, r.component, change == "shield", r.ts_ms, description))
    return out


async def record(pool: asyncpg.Pool, readings: Sequence[Reading]) -> None:
    """Keep the shield changes of these readings (usually none: one pass over them)."""
    for device_id, point, shielded, ts_ms, description in shield_changes(readings):
        at = datetime.fromtimestamp(ts_ms / 1000, UTC)
        if shielded:
            await pool.execute(
                """INSERT INTO panel_shields (device_id, component, since, description) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (device_id, component) DO UPDATE
                   SET since = CASE WHEN panel_shields.cleared_at IS NULL THEN panel_shields.since ELSE $3 END,
                       description = $4, cleared_at = NULL""",
                device_id, point, at, description,
            )
        else:
            await pool.execute(
                "UPDATE panel_shields SET cleared_at = $3 "
                "WHERE device_id = $1 AND component = $2 AND cleared_at IS NULL",
                device_id, point, at,
            )


@router.get("/uitd/{device_id}/shielded")
async def shielded_points(device_id: str, principal: Viewer, alarms: Alarms) -> dict[str, Any]:
    """The panel points this transmission device reports shielded now, longest first."""
    device = await registry.get_device(alarms.pool, device_id)
    if device is None:
        raise HTTPException(404, f"无此设备 / unknown device {device_id}")
    if not principal.sees(device["region"], device["industry"]):
        raise HTTPException(403, f"device {device_id} is outside your regions")
    rows = await alarms.pool.fetch(
        "SELECT component, since, description FROM panel_shields WHERE device_id = $1 AND cleared_at IS NULL "
        "ORDER BY since, component", device_id,
    )
    return {
        "device_id": device_id,
        "items": [{"point": r["component"], "since": r["since"].isoformat(), "description": r["description"]}
                  for r in rows],
    }

"""A supervisor's override of a unit's risk colour (docs/risk.md, "Overrides").

`PUT /api/v1/units/{unit_id}/risk-override` (admin: there is no separate supervisor role) with
`{"colour", "reason", "until"}` sets the colour the grading shows until `until` (at most 90 days
ahead); `DELETE` lifts it early. Every override is kept in `risk_overrides` with who set and who
lifted it: `GET` answers that history (the audit), newest first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg
from fastapi import APIRouter, HTTPException
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from alerting.risk_api import Risk
from devices.auth import Admin, Principal, Viewer

router = APIRouter(prefix="/api/v1/units", tags=["risk"])
MAX_AHEAD = timedelta(days=90)


class OverrideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    colour: Literal["green", "yellow", "orange", "red"]
    reason: str = Field(min_length=1, max_length=500)
    until: AwareDatetime = Field(description="RFC 3339; in the future, at most 90 days ahead")


def _json(row: asyncpg.Record) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in dict(row).items()}


async def _unit(pool: asyncpg.Pool, unit_id: str, principal: Principal) -> None:
    row = await pool.fetchrow("SELECT region, industry FROM units WHERE unit_id = $1", unit_id)
    if row is None:
        raise HTTPException(404, f"无此单位 / unknown unit {unit_id}")
    if not principal.sees(row["region"], row["industry"]):
        raise HTTPException(403, f"unit {unit_id} is outside your regions")


@router.put("/{unit_id}/risk-override")
async def set_override(unit_id: str, body: OverrideIn, principal: Admin, risk: Risk) -> dict[str, Any]:
    """Set the unit's colour until `until`; the grading shows it instead of the computed colour."""
    await _unit(risk.pool, unit_id, principal)
    now = risk.wall()
    if not now < body.until <= now + MAX_AHEAD:
        raise HTTPException(422, "until 须在将来且不超过 90 天 / until must be in the future, at most 90 days ahead")
    row = await risk.pool.fetchrow(
        """INSERT INTO risk_overrides (unit_id, colour, reason, until, set_by, set_at)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING *""",
        unit_id, body.colour, body.reason, body.until.astimezone(UTC), principal.name, now,
    )
    assert row is not None
    await risk.refresh()
    return _json(row)


@router.delete("/{unit_id}/risk-override")
async def lift_override(unit_id: str, principal: Admin, risk: Risk) -> dict[str, Any]:
    """Lift the unit's override now (404 when none holds)."""
    await _unit(risk.pool, unit_id, principal)
    row = await risk.pool.fetchrow(
        """UPDATE risk_overrides SET lifted_by = $2, lifted_at = $3
            WHERE id = (SELECT max(id) FROM risk_overrides WHERE unit_id = $1)
              AND lifted_at IS NULL AND until > $3 RETURNING *""",
        unit_id, principal.name, risk.wall(),
    )
    if row is None:
        raise HTTPException(404, f"单位 {unit_id} 无有效的人工定级 / no override holds for unit {unit_id}")
    await risk.refresh()
    return _json(row)


@router.get("/{unit_id}/risk-override")
async def override_history(unit_id: str, principal: Viewer, risk: Risk) -> dict[str, Any]:
    """Every override of the unit, newest first; `active` is the one that holds now, if any."""
    await _unit(risk.pool, unit_id, principal)
    rows = await risk.pool.fetch("SELECT * FROM risk_overrides WHERE unit_id = $1 ORDER BY id DESC", unit_id)
    now = risk.wall()
    active = rows[0] if rows and rows[0]["lifted_at"] is None and rows[0]["until"] > now else None
    return {"active": _json(active) if active else None, "items": [_json(r) for r in rows]}

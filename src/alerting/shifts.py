"""Shift handover (交接班, issue 20): an operator closes a shift with a note; the alarms and work
orders open at that moment within the operator's scope are listed for the next shift and kept
with the note (`shifts`). `POST /api/v1/shifts`, `GET /api/v1/shifts`.

A shift is shown to tokens whose scope covers the scope it was closed in (an unscoped shift to
unscoped tokens only), so a note never leaves the regions it was written for.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from alerting.api import Alarms
from alerting.lifecycle import to_dt
from alerting.model import OPEN_STATUSES
from devices.auth import Operator, Principal, Viewer
from devices.scope import Scope, under

router = APIRouter(prefix="/api/v1", tags=["supervision"])
#: At most this many open alarms and work orders are handed over (the oldest first).
MAX_ITEMS = 500

_ALARMS = """
SELECT a.alarm_id, a.type, a.severity, a.response, a.status, a.region, a.unit_id, a.device_ids, a.first_seen
  FROM alarms a LEFT JOIN units u ON u.unit_id = a.unit_id
 WHERE a.status = ANY($1::text[]) AND {scope}
 ORDER BY a.first_seen, a.alarm_id LIMIT {limit}
"""
_WORK_ORDERS = """
SELECT w.work_order_id, w.kind, w.unit_id, w.region, w.state, w.due, w.assignee, w.reason,
       (w.due < $1) AS overdue
  FROM work_orders w
 WHERE w.state NOT IN ('verified', 'cancelled') AND {scope}
 ORDER BY w.due, w.work_order_id LIMIT {limit}
"""


class ShiftIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(min_length=1, max_length=2000, description="what the next shift must know")


def _plain(row: asyncpg.Record) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime | date) else v for k, v in dict(row).items()}


def covers(viewer: Principal, regions: list[str], industries: list[str]) -> bool:
    """Whether the viewer's scope covers a scope of `regions` and `industries` (empty: all)."""
    if viewer.regions and (not regions or not all(any(under(r, p) for p in viewer.regions) for r in regions)):
        return False
    return not viewer.industries or (bool(industries) and set(industries) <= set(viewer.industries))


async def open_items(
    pool: asyncpg.Pool, scope: Scope, today: date
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The open alarms and the open work orders in `scope`."""
    sql, args = scope.sql("a.region", "coalesce(u.industry, 'other')", first=2)
    alarms = await pool.fetch(_ALARMS.format(scope=sql, limit=MAX_ITEMS), list(OPEN_STATUSES), *args)
    sql, args = scope.sql("w.region", "w.industry", first=2)
    orders = await pool.fetch(_WORK_ORDERS.format(scope=sql, limit=MAX_ITEMS), today, *args)
    return [_plain(r) for r in alarms], [_plain(r) for r in orders]


def shift_json(row: asyncpg.Record) -> dict[str, Any]:
    out = _plain(row)
    out["open_alarms"] = json.loads(row["open_alarms"])
    out["open_work_orders"] = json.loads(row["open_work_orders"])
    return out


@router.post("/shifts", status_code=201)
async def close_shift(body: ShiftIn, principal: Operator, alarms: Alarms) -> dict[str, Any]:
    """Close the caller's shift: keep the note with the open alarms and work orders it hands over."""
    now = to_dt(alarms.clock())
    today = now.astimezone(alarms.lifecycle.tz).date()
    open_alarms, open_orders = await open_items(alarms.pool, principal.scope(), today)
    row = await alarms.pool.fetchrow(
        """INSERT INTO shifts (closed_by, closed_at, note, regions, industries, open_alarms, open_work_orders)
           VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb) RETURNING *""",
        principal.name, now, body.note, list(principal.regions), list(principal.industries),
        json.dumps(open_alarms, ensure_ascii=False), json.dumps(open_orders, ensure_ascii=False),
    )
    assert row is not None
    return shift_json(row)


@router.get("/shifts")
async def list_shifts(
    principal: Viewer, alarms: Alarms, limit: Annotated[int, Query(ge=1, le=200)] = 20
) -> dict[str, Any]:
    """Closed shifts within the caller's scope, newest first."""
    rows = await alarms.pool.fetch("SELECT * FROM shifts ORDER BY closed_at DESC, shift_id DESC LIMIT $1", limit * 10)
    visible = [r for r in rows if covers(principal, list(r["regions"]), list(r["industries"]))]
    return {"items": [shift_json(r) for r in visible[:limit]]}

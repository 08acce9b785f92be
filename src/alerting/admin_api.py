"""Routes for operators' and admins' settings of alarm handling (docs/escalation.md).

- `POST /api/v1/devices/{device_id}/flapping/clear` (operator): lift a detector's flapping mark
  (CONTRACT §8), audited in `device_audit` with the operator's name.
- `POST /api/v1/devices/{device_id}/flooding/clear` (operator): lift a detector's flooding mark
  (docs/escalation.md, "Flooding detectors"), audited the same way.
- `POST /api/v1/escalation-contacts` (admin): add or replace the contact `name` of a region path
  and level (0 unit contact, 1 grid worker, 2 micro fire station, 3 fire brigade dispatch) with
  its webhook URL (an outbound target: 422 naming an address the outbound policy refuses,
  CONTRACT §9); `GET` lists them (filter by `region` prefix and `level`), `DELETE` removes one.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import AnyHttpUrl, BaseModel, Field

from alerting.api import Alarms
from alerting.lifecycle import LEVEL_NAMES, MAX_LEVEL
from alerting.service import UnknownDevice
from devices import fleet_query, registry
from devices.api import Outbound
from devices.auth import Admin, Operator
from devices.cursors import int_cursor
from devices.outbound import OutboundRefused, check_target
from devices.scope import Scope

router = APIRouter(prefix="/api/v1", tags=["alarm settings"])

Level = Annotated[int, Field(
    ge=0, le=MAX_LEVEL, description="0 unit contact, 1 grid worker, 2 micro fire station, 3 fire brigade dispatch"
)]


class FlappingClear(BaseModel):
    note: str | None = Field(None, max_length=4000)


@router.post("/devices/{device_id}/flapping/clear")
async def clear_flapping(
    device_id: str, principal: Operator, alarms: Alarms, body: FlappingClear | None = None
) -> dict[str, Any]:
    """Clear the detector's flapping mark; `cleared` says whether it was marked."""
    fleet = alarms.fleet
    slot = fleet.slot(device_id)
    if slot < 0:
        raise HTTPException(404, f"unknown device {device_id}")
    region = fleet_query.snapshot(fleet, slot)["region"]
    device = await registry.get_device(alarms.pool, device_id) if principal.industries else None
    industry = device["industry"] if device else None
    if not principal.sees(region, industry):
        raise HTTPException(403, f"device {device_id} is outside your regions")
    try:
        cleared = await alarms.clear_flapping(device_id, principal.name, body.note if body else None)
    except UnknownDevice as e:
        raise HTTPException(404, str(e)) from None
    return {"device_id": device_id, "flapping": False, "cleared": cleared, "by": principal.name}


class FloodingClear(BaseModel):
    note: str | None = Field(None, max_length=4000)


@router.post("/devices/{device_id}/flooding/clear")
async def clear_flooding(
    device_id: str, principal: Operator, alarms: Alarms, body: FloodingClear | None = None
) -> dict[str, Any]:
    """Clear the detector's flooding mark (its alarm rate stayed above the flood bound);
    `cleared` says whether it was marked. Only a new full window above the rate marks it again."""
    fleet = alarms.fleet
    slot = fleet.slot(device_id)
    if slot < 0:
        raise HTTPException(404, f"unknown device {device_id}")
    region = fleet_query.snapshot(fleet, slot)["region"]
    device = await registry.get_device(alarms.pool, device_id) if principal.industries else None
    if not principal.sees(region, device["industry"] if device else None):
        raise HTTPException(403, f"device {device_id} is outside your regions")
    try:
        cleared = await alarms.clear_flooding(device_id, principal.name, body.note if body else None)
    except UnknownDevice as e:
        raise HTTPException(404, str(e)) from None
    return {"device_id": device_id, "flooding": False, "cleared": cleared, "by": principal.name}


class ContactIn(BaseModel):
    region: str = Field("", max_length=500, description="region path; '' is every region")
    level: Level
    name: str = Field(min_length=1, max_length=200)
    webhook: AnyHttpUrl


def _contact(r: Any) -> dict[str, Any]:
    return {"region": r["region"], "level": r["level"], "level_name": LEVEL_NAMES[r["level"]], "name": r["name"],
            "webhook": r["webhook"], "updated_by": r["updated_by"], "updated_at": r["updated_at"].isoformat()}


@router.post("/escalation-contacts", status_code=201)
async def upsert_contact(body: ContactIn, principal: Admin, alarms: Alarms, outbound: Outbound) -> dict[str, Any]:
    """Add the contact, or replace the webhook of the contact of that region, level and name."""
    try:
        await check_target(str(body.webhook), outbound)
    except OutboundRefused as e:
        raise HTTPException(422, f"webhook: {e}") from None
    row = await alarms.pool.fetchrow(
        """INSERT INTO region_contacts (region, level, name, webhook, updated_by, updated_at)
           VALUES ($1, $2, $3, $4, $5, now())
           ON CONFLICT (region, level, name) DO UPDATE SET webhook = EXCLUDED.webhook,
               updated_by = EXCLUDED.updated_by, updated_at = EXCLUDED.updated_at
           RETURNING *""",
        body.region.strip().rstrip("/"), body.level, body.name, str(body.webhook), principal.name,
    )
    return _contact(row)


@router.get("/escalation-contacts")
async def list_contacts(
    principal: Admin,
    alarms: Alarms,
    region: Annotated[str | None, Query(description="region path prefix")] = None,
    level: Annotated[int | None, Query(ge=0, le=MAX_LEVEL)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> dict[str, Any]:
    """Contacts ordered by region, level and name."""
    offset = int_cursor(cursor) if cursor is not None else 0
    under, params = Scope(region=region.strip("/") if region else None).sql(first=4)  # whole path segments
    rows = await alarms.pool.fetch(
        f"""SELECT * FROM region_contacts WHERE {under} AND ($1::int IS NULL OR level = $1)
           ORDER BY region, level, name OFFSET $2 LIMIT $3""",
        level, offset, limit + 1, *params,
    )
    items = [_contact(r) for r in rows[:limit]]
    return {"items": items, "next_cursor": str(offset + limit) if len(rows) > limit else None}


@router.delete("/escalation-contacts", status_code=204)
async def delete_contact(
    principal: Admin, alarms: Alarms, level: Annotated[int, Query(ge=0, le=MAX_LEVEL)], name: str, region: str = ""
) -> Response:
    """Remove one contact; 404 when there is none of that region, level and name."""
    done = await alarms.pool.execute(
        "DELETE FROM region_contacts WHERE region = $1 AND level = $2 AND name = $3",
        region.strip().rstrip("/"), level, name,
    )
    if done == "DELETE 0":
        raise HTTPException(404, f"no level {level} contact {name!r} for region {region!r}")
    return Response(status_code=204)

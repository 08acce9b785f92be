"""查岗 routes (CONTRACT §11): `POST /api/v1/duty-checks` sends duty checks to one transmission
device or every one of a region; `GET /api/v1/duty-checks` lists them, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Protocol, cast

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from alerting.dutychecks import STATES, DutyChecks, check_json
from devices.auth import IndustryFilter, Operator, RegionFilter, Viewer, list_scope
from devices.registry import InvalidSpec, region_path
from devices.scope import like_escape

router = APIRouter(prefix="/api/v1", tags=["supervision"])
#: A region check reaches at most this many devices (422 beyond: narrow the region).
MAX_TARGETS = 2000


class DutyChecksDeps(Protocol):
    @property
    def duty_checks(self) -> DutyChecks: ...


def deps(request: Request) -> DutyChecks:
    return cast(DutyChecksDeps, request.state.services).duty_checks


Checks = Annotated[DutyChecks, Depends(deps)]


class DutyCheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_id: str | None = Field(None, max_length=64, description="a transmission device (uitd-<address>)")
    region: str | None = Field(None, max_length=400, description="every transmission device of this region path")
    answer_minutes: int = Field(10, ge=1, le=255, description="minutes the person on duty has to answer")

    @model_validator(mode="after")
    def one_target(self) -> DutyCheckIn:
        if (self.device_id is None) == (self.region is None):
            raise ValueError("须给出 device_id 或 region 之一 / give exactly one of device_id and region")
        return self


@router.post("/duty-checks", status_code=201)
async def send_duty_checks(body: DutyCheckIn, principal: Operator, checks: Checks) -> dict[str, Any]:
    """Send a duty check to a transmission device, or to every one of a region in the token's scope."""
    scope = principal.scope()
    if body.device_id is not None:
        targets = await checks.targets("d.device_id = $1", body.device_id)
        if not targets:
            raise HTTPException(404, f"无此用户信息传输装置 / {body.device_id} is not a registered transmission device")
        if not scope.sees(targets[0].region, targets[0].industry):
            raise HTTPException(403, f"device {body.device_id} is outside your regions")
    else:
        try:
            region = region_path(body.region)
        except InvalidSpec as e:
            raise HTTPException(422, str(e)) from None
        if not region:
            raise HTTPException(422, "region 不能为空 / region must not be empty")
        if not scope.sees_region(region) and not any(r.startswith(region + "/") for r in principal.regions):
            raise HTTPException(403, f"region {region} is outside your regions")
        found = await checks.targets("(u.region = $1 OR u.region LIKE $2)", region, like_escape(region) + "/%")
        targets = [t for t in found if scope.sees(t.region, t.industry)]
        if not targets:
            raise HTTPException(404, f"该区域无用户信息传输装置 / no transmission device in {region}")
        if len(targets) > MAX_TARGETS:
            raise HTTPException(422, f"设备过多 / {len(targets)} devices; at most {MAX_TARGETS} per request")
    items = await checks.start(targets, body.answer_minutes, principal.name)
    return {"items": items}


@router.get("/duty-checks")
async def list_duty_checks(
    principal: Viewer,
    checks: Checks,
    region: RegionFilter = None,
    industry: IndustryFilter = None,
    device_id: Annotated[str | None, Query(max_length=64)] = None,
    state: Annotated[Literal["sent", "confirmed", "answered", "missed", "unreachable"] | None, Query()] = None,
    since: Annotated[datetime | None, Query(description="sent at or after")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Duty checks within the token's scope, newest first."""
    scope_sql, args = list_scope(principal, region, industry).sql()
    where = [scope_sql]
    for column, value in (("device_id", device_id), ("state", state), ("sent_at >=", since)):
        if value is not None:
            args.append(value)
            where.append(f"{column} {'' if '>=' in column else '='} ${len(args)}")
    args.append(limit)
    rows = await checks.pool.fetch(
        f"SELECT * FROM duty_checks WHERE {' AND '.join(where)} "
        f"ORDER BY sent_at DESC, check_id DESC LIMIT ${len(args)}",
        *args,
    )
    return {"items": [check_json(r) for r in rows], "states": list(STATES)}

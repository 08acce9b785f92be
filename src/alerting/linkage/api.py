"""Linkage routes (CONTRACT §10).

- `GET /api/v1/units/{unit_id}/linkage` (viewer) and `PUT` (admin): the unit's policy
  `{"gas_valve", "breaker", "charger_port"}`, each `auto`, `confirm` or `off` (default `off`); a
  missing key keeps its value. 404 unknown unit, 422 unknown key or value, 409 `breaker: auto`
  for hospitals, elderly care and welfare institutions.
- `GET /api/v1/alarms/{alarm_id}/linkage` (viewer): the alarm's linkage commands and offers.
- `POST /api/v1/alarms/{alarm_id}/linkage` (operator, optional `{"cmd"}`): send the command the
  linkage offered for the alarm (confirm mode); 409 when none is offered or the alarm is closed.
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol, cast

from fastapi import APIRouter, Body, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from alerting.lifecycle import AlarmNotFound
from alerting.linkage import store
from alerting.linkage.policy import MODES, BadPolicy, RefusedPolicy, updated
from alerting.linkage.runner import AlarmClosed, LinkageRunner, NothingOffered
from devices.auth import Admin, Operator, Principal, Viewer

router = APIRouter(prefix="/api/v1", tags=["linkage"])


class LinkageDeps(Protocol):
    @property
    def linkage(self) -> LinkageRunner: ...


def runner(request: Request) -> LinkageRunner:
    return cast(LinkageDeps, request.state.services).linkage


Runner = Annotated[LinkageRunner, Depends(runner)]


class PolicyIn(BaseModel):
    """Keys are checked by the policy (422 naming an unknown one)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"example": {"gas_valve": "auto", "breaker": "confirm"}})

    gas_valve: str | None = Field(None, description=" | ".join(MODES))
    breaker: str | None = Field(None, description=" | ".join(MODES))
    charger_port: str | None = Field(None, description=" | ".join(MODES))


async def _unit(linkage: LinkageRunner, principal: Principal, unit_id: str) -> str | None:
    """The unit's industry; 404 unknown, 403 outside the principal's scope."""
    row = await linkage.pool.fetchrow("SELECT region, industry FROM units WHERE unit_id = $1", unit_id)
    if row is None:
        raise HTTPException(404, f"未知单位 / unknown unit {unit_id}")
    if not principal.sees(row["region"], row["industry"]):
        raise HTTPException(403, f"unit {unit_id} is outside your regions")
    return str(row["industry"])


@router.get("/units/{unit_id}/linkage")
async def get_unit_linkage(unit_id: str, principal: Viewer, linkage: Runner) -> dict[str, str]:
    """The unit's linkage policy (every actuator `off` until set)."""
    await _unit(linkage, principal, unit_id)
    return (await store.get_policy(linkage.pool, unit_id)).as_dict()


@router.put("/units/{unit_id}/linkage")
async def put_unit_linkage(unit_id: str, body: PolicyIn, principal: Admin, linkage: Runner) -> dict[str, str]:
    """Change the unit's linkage policy; answers the stored policy."""
    industry = await _unit(linkage, principal, unit_id)
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items()}
    async with linkage.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM units WHERE unit_id = $1 FOR UPDATE", unit_id)
        try:
            policy = updated(await store.get_policy(conn, unit_id), changes, industry)
        except BadPolicy as e:
            raise HTTPException(422, str(e)) from None
        except RefusedPolicy as e:
            raise HTTPException(409, str(e)) from None
        await store.save_policy(conn, unit_id, policy, principal.name)
    return policy.as_dict()


async def _visible_alarm(linkage: LinkageRunner, principal: Principal, alarm_id: str) -> int:
    row = await linkage.pool.fetchrow(
        "SELECT a.alarm_id, a.region, u.industry FROM alarms a LEFT JOIN units u USING (unit_id) WHERE a.alarm_id = $1",
        int(alarm_id) if alarm_id.isascii() and alarm_id.isdigit() and len(alarm_id) <= 18 else -1,
    )
    if row is None or not principal.sees(row["region"], row["industry"]):
        raise HTTPException(404, f"alarm {alarm_id} does not exist")
    return int(row["alarm_id"])


@router.get("/alarms/{alarm_id}/linkage")
async def alarm_linkage(alarm_id: str, principal: Viewer, linkage: Runner) -> dict[str, Any]:
    """The linkage commands sent (`mode` auto, or confirm once an operator sent it) and offered for the alarm."""
    number = await _visible_alarm(linkage, principal, alarm_id)
    return {"items": await store.for_alarm(linkage.pool, number), "next_cursor": None}


class OfferIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cmd: str | None = Field(None, description="the offered command to send; default: the alarm's only one")


@router.post("/alarms/{alarm_id}/linkage")
async def send_offered(
    alarm_id: str, principal: Operator, linkage: Runner, body: Annotated[OfferIn | None, Body()] = None
) -> dict[str, Any]:
    """Send the linkage command offered for the alarm (confirm mode), in the operator's name."""
    number = await _visible_alarm(linkage, principal, alarm_id)
    try:
        return await linkage.send_offer(number, body.cmd if body else None, principal.name)
    except AlarmNotFound as e:
        raise HTTPException(404, str(e)) from None
    except (NothingOffered, AlarmClosed) as e:
        raise HTTPException(409, str(e)) from None

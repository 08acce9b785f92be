"""Floor-plan routes (issue 19): upload a unit's floor plan, read it back, place devices on it.

Viewers read; operators and admins upload, delete and place. The image is the raw request body
(`PUT`, any content type: the bytes decide, `devices.floorplans.sniff`), at most 5 MiB (413
above). A floor in a path is written as the operator likes (`3`, `3F`, `B1`, `地下1层`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request, Response

from devices import floorplans, registry
from devices.api import Devices
from devices.auth import Operator, Principal, Viewer
from devices.locations import InvalidLocation, floor_key
from devices.service import DeviceService

router = APIRouter(prefix="/api/v1/units/{unit_id}/floorplans", tags=["floor plans"])
PLAN_PATH = r"/api/v1/units/[^/]+/floorplans/[^/]+"


async def _unit(svc: DeviceService, principal: Principal, unit_id: str) -> None:
    unit = await registry.get_unit(svc.pool, unit_id)
    if unit is None:
        raise HTTPException(404, f"unknown unit {unit_id}")
    if not principal.sees(unit["region"], unit["industry"]):
        raise HTTPException(403, f"unit {unit_id} is outside your regions")


def _floor(floor: str) -> str:
    try:
        return floor_key(floor)
    except InvalidLocation as e:
        raise HTTPException(422, str(e).replace("location.floor", "floor")) from None


def _no_plan(unit_id: str, floor: str) -> HTTPException:
    return HTTPException(404, f"单位 {unit_id} 没有 {floor} 层的平面图 / unit {unit_id} has no plan of floor {floor}")


@router.get("")
async def list_plans(
    unit_id: str, principal: Viewer, svc: Devices,
    floor: Annotated[str | None, Query(description="only this floor's plan (`3`, `3F`, `B1`, ...), if any")] = None,
) -> dict[str, Any]:
    """The unit's plans (without the images), below ground first, each with its device positions."""
    await _unit(svc, principal, unit_id)
    plans = await floorplans.list_plans(svc.pool, unit_id)
    if floor is not None:
        key = _floor(floor)
        plans = [p for p in plans if p["floor"] == key]
    return {"items": plans, "next_cursor": None}


@router.get("/{floor}")
async def get_plan(unit_id: str, floor: str, principal: Viewer, svc: Devices) -> dict[str, Any]:
    await _unit(svc, principal, unit_id)
    plan = await floorplans.get_plan(svc.pool, unit_id, _floor(floor))
    if plan is None:
        raise _no_plan(unit_id, floor)
    return plan


@router.get("/{floor}/image")
async def plan_image(unit_id: str, floor: str, request: Request, principal: Viewer, svc: Devices) -> Response:
    """The image itself, with an ETag (its SHA-256): an unchanged plan answers 304."""
    await _unit(svc, principal, unit_id)
    row = await floorplans.plan_image(svc.pool, unit_id, _floor(floor))
    if row is None:
        raise _no_plan(unit_id, floor)
    etag = f'"{row["sha256"]}"'
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(row["image"], media_type=row["content_type"], headers=headers)


@router.put("/{floor}", openapi_extra={"requestBody": {"required": True, "content": {
    "image/png": {"schema": {"type": "string", "format": "binary"}},
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}})
async def upload_plan(
    unit_id: str, floor: str, request: Request, response: Response, principal: Operator, svc: Devices
) -> dict[str, Any]:
    """Upload (201) or replace (200; devices keep their places) the plan of a floor: a PNG or
    JPEG image as the body. 422 for anything else, 413 over 5 MiB."""
    await _unit(svc, principal, unit_id)
    _floor(floor)
    try:
        plan, created = await floorplans.save_plan(svc.pool, unit_id, floor, await request.body(), principal.name)
    except floorplans.InvalidImage as e:
        raise HTTPException(422, str(e)) from None
    response.status_code = 201 if created else 200
    return plan


@router.delete("/{floor}", status_code=204)
async def delete_plan(unit_id: str, floor: str, principal: Operator, svc: Devices) -> None:
    await _unit(svc, principal, unit_id)
    if not await floorplans.delete_plan(svc.pool, unit_id, _floor(floor)):
        raise _no_plan(unit_id, floor)


@router.put("/{floor}/devices/{device_id}")
async def place_device(
    unit_id: str, floor: str, device_id: str, principal: Operator, svc: Devices,
    x: Annotated[Any, Body(description="0 (left edge) to 1 (right edge) of the image")],
    y: Annotated[Any, Body(description="0 (top edge) to 1 (bottom edge) of the image")],
) -> dict[str, Any]:
    """Put a device of the unit on the plan at (x, y), moving it off any other plan."""
    await _unit(svc, principal, unit_id)
    try:
        at = floorplans.fraction(x, "x"), floorplans.fraction(y, "y")
        placed = await floorplans.place_device(svc.pool, unit_id, _floor(floor), device_id, *at, principal.name)
    except ValueError as e:
        raise HTTPException(422, str(e)) from None
    except floorplans.NotInUnit:
        raise HTTPException(422, f"设备 {device_id} 不属于单位 {unit_id} / device {device_id} is not in unit "
                                 f"{unit_id}") from None
    if not placed:
        raise _no_plan(unit_id, floor)
    return {"device_id": device_id, "floor": _floor(floor), "x": at[0], "y": at[1]}


@router.delete("/{floor}/devices/{device_id}", status_code=204)
async def unplace_device(unit_id: str, floor: str, device_id: str, principal: Operator, svc: Devices) -> None:
    await _unit(svc, principal, unit_id)
    if not await floorplans.unplace_device(svc.pool, unit_id, _floor(floor), device_id):
        raise HTTPException(404, f"device {device_id} is not on the plan of floor {floor}")

"""Responders (CONTRACT §9 "Responder"): people and teams, the `responders` table and its admin routes.

- `POST /api/v1/responders`: `responder_id` (given or generated), `name`, `role`, `phone` (E.164),
  `email`, `channels` (names of existing channels, in order of preference), scope `regions`
  (path prefixes, whole segments) and/or `unit_ids`, `location` `{"lat", "lon"}` (WGS-84),
  `on_duty` windows `[{"weekday": 1-7, "start": "HH:MM", "end": "HH:MM"}]` (absent: always;
  an `end` not after `start` runs past midnight). 201; 409 when the id exists; 422 for bad input.
- `GET /api/v1/responders` (filters `role`, `unit_id`, `region`: responders whose scope covers it),
  `GET /api/v1/responders/{responder_id}`.
- `PATCH /api/v1/responders/{responder_id}`: the fields given are replaced, validated alike.
- `DELETE /api/v1/responders/{responder_id}`: `deleted_at` set (its notifications stay as
  history) and its tokens revoked; 204.
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel, Field, field_validator

from alerting.response.channels.store import NAME_PATTERN, Deps
from alerting.response.targets import Window, covers_region
from devices.auth import Admin
from devices.cursors import int_cursor

router = APIRouter(prefix="/api/v1", tags=["response"])

Role = Literal["unit_contact", "grid_worker", "micro_station", "fire_brigade", "duty_officer", "maintainer"]
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class Location(BaseModel):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class OnDuty(BaseModel):
    weekday: int = Field(ge=1, le=7, description="ISO weekday, Monday 1")
    start: str = Field(description="HH:MM, MIAOXIANG_DEVICE_TZ")
    end: str = Field(description="HH:MM; not after start: runs past midnight")

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        Window.parse({"weekday": 1, "start": v, "end": v})
        return v


def _phone(v: str | None) -> str | None:
    if v is not None and not E164.match(v):
        raise ValueError("电话须为 E.164 格式，如 +8613800000000 / phone must be E.164, e.g. +8613800000000")
    return v


def _email(v: str | None) -> str | None:
    if v is not None and not EMAIL.match(v):
        raise ValueError("邮箱格式无效 / email is not valid")
    return v


def _regions(v: list[str] | None) -> list[str] | None:
    if v is None:
        return None
    out: list[str] = []
    for region in v:
        path = region.strip().rstrip("/")
        if not path or any(not seg.strip() for seg in path.split("/")) or len(path) > 500:
            raise ValueError(f"区域路径无效：{region!r} / region path {region!r} is not a path of non-empty segments")
        out.append(path)
    return out


class _Checked(BaseModel):
    """The checks of responder fields shared by create and update."""

    @field_validator("phone", check_fields=False)
    @classmethod
    def _check_phone(cls, v: str | None) -> str | None:
        return _phone(v)

    @field_validator("email", check_fields=False)
    @classmethod
    def _check_email(cls, v: str | None) -> str | None:
        return _email(v)

    @field_validator("regions", check_fields=False)
    @classmethod
    def _check_regions(cls, v: list[str] | None) -> list[str] | None:
        return _regions(v)


ChannelName = Annotated[str, Field(pattern=NAME_PATTERN)]
UnitId = Annotated[str, Field(min_length=1, max_length=200)]


class ResponderIn(_Checked):
    responder_id: str | None = Field(None, pattern=NAME_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    role: Role
    phone: str | None = Field(None, max_length=20)
    email: str | None = Field(None, max_length=320)
    channels: list[ChannelName] = Field(min_length=1, max_length=20)
    regions: list[str] = Field(default_factory=list, max_length=100)
    unit_ids: list[UnitId] = Field(default_factory=list, max_length=1000)
    location: Location | None = None
    on_duty: list[OnDuty] | None = Field(None, max_length=100)


class ResponderPatch(_Checked):
    name: str | None = Field(None, min_length=1, max_length=200)
    role: Role | None = None
    phone: str | None = Field(None, max_length=20)
    email: str | None = Field(None, max_length=320)
    channels: list[ChannelName] | None = Field(None, max_length=20)
    regions: list[str] | None = Field(None, max_length=100)
    unit_ids: list[UnitId] | None = Field(None, max_length=1000)
    location: Location | None = None
    on_duty: list[OnDuty] | None = Field(None, max_length=100)


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat().replace("+00:00", "Z")


def _loads(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str) else v


def shown(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "responder_id": r["responder_id"], "name": r["name"], "role": r["role"], "phone": r["phone"],
        "email": r["email"], "channels": list(r["channels"]), "regions": list(r["regions"]),
        "unit_ids": list(r["unit_ids"]), "location": _loads(r["location"]), "on_duty": _loads(r["on_duty"]),
        "origin": r["origin"], "updated_by": r["updated_by"], "created_at": _iso(r["created_at"]),
        "updated_at": _iso(r["updated_at"]), "deleted_at": _iso(r["deleted_at"]),
    }


async def _check_channels(conn: asyncpg.Connection, names: list[str] | None) -> None:
    if not names:
        return
    found = {r["name"] for r in await conn.fetch(
        "SELECT name FROM channels WHERE name = ANY($1::text[]) AND deleted_at IS NULL", names)}
    missing = [n for n in names if n not in found]
    if missing:
        raise HTTPException(422, f"渠道不存在：{', '.join(missing)} / unknown channels: {', '.join(missing)}")
    if len(set(names)) != len(names):
        raise HTTPException(422, "渠道重复 / a channel is listed twice")


def _columns(body: ResponderIn | ResponderPatch) -> dict[str, Any]:
    """The columns a body sets (only the fields it gives)."""
    given = body.model_dump(exclude_unset=not isinstance(body, ResponderIn))
    out: dict[str, Any] = {}
    for key, value in given.items():
        if key in ("location", "on_duty"):
            out[key] = None if value is None else json.dumps(value)
        elif key in ("channels", "regions", "unit_ids"):
            out[key] = value or []
        elif key != "responder_id":
            out[key] = value
    return out


@router.post("/responders", status_code=201)
async def create_responder(body: ResponderIn, principal: Admin, d: Deps) -> dict[str, Any]:
    columns = _columns(body)
    columns["responder_id"] = body.responder_id or f"r-{secrets.token_hex(8)}"
    columns["updated_by"] = principal.name
    names = list(columns)
    values = ", ".join(f"${i}" + ("::jsonb" if n in ("location", "on_duty") else "") for i, n in
                       enumerate(names, 1))
    async with d.pool.acquire() as conn, conn.transaction():
        await _check_channels(conn, body.channels)
        row = await conn.fetchrow(
            f"INSERT INTO responders ({', '.join(names)}) VALUES ({values}) ON CONFLICT DO NOTHING RETURNING *",
            *columns.values())
    if row is None:
        rid = columns['responder_id']
        raise HTTPException(409, f"响应人 {rid} 已存在 / responder {rid} exists")
    return shown(row)


@router.get("/responders")
async def list_responders(
    principal: Admin, d: Deps,
    role: Annotated[Role | None, Query()] = None,
    unit_id: Annotated[str | None, Query(description="responders scoped to this unit")] = None,
    region: Annotated[str | None, Query(description="responders whose scope covers this region path")] = None,
    include_deleted: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> dict[str, Any]:
    """Responders ordered by id."""
    offset = int_cursor(cursor) if cursor is not None else 0
    rows = await d.pool.fetch(
        """SELECT * FROM responders WHERE ($1 OR deleted_at IS NULL) AND ($2::text IS NULL OR role = $2)
              AND ($3::text IS NULL OR $3 = ANY(unit_ids)) ORDER BY responder_id""",
        include_deleted, role, unit_id)
    if region is not None:
        rows = [r for r in rows if any(covers_region(p, region) for p in r["regions"])
                or not (r["regions"] or r["unit_ids"])]
    page = rows[offset:offset + limit]
    return {"items": [shown(r) for r in page],
            "next_cursor": str(offset + limit) if len(rows) > offset + limit else None}


@router.get("/responders/{responder_id}")
async def get_responder(responder_id: str, principal: Admin, d: Deps) -> dict[str, Any]:
    row = await d.pool.fetchrow("SELECT * FROM responders WHERE responder_id = $1", responder_id)
    if row is None:
        raise HTTPException(404, f"响应人 {responder_id} 不存在 / responder {responder_id} does not exist")
    return shown(row)


@router.patch("/responders/{responder_id}")
async def update_responder(responder_id: str, body: ResponderPatch, principal: Admin, d: Deps) -> dict[str, Any]:
    columns = _columns(body)
    for required in ("name", "role"):
        if required in columns and columns[required] is None:
            raise HTTPException(422, f"{required} 不能为空 / {required} cannot be null")
    if "channels" in columns and not columns["channels"]:
        raise HTTPException(422, "至少需要一个渠道 / at least one channel is required")
    columns["updated_by"] = principal.name
    sets = ", ".join(f"{n} = ${i}" + ("::jsonb" if n in ("location", "on_duty") else "")
                     for i, n in enumerate(columns, 2))
    async with d.pool.acquire() as conn, conn.transaction():
        await _check_channels(conn, body.channels)
        row = await conn.fetchrow(
            f"UPDATE responders SET {sets}, updated_at = now() WHERE responder_id = $1 AND deleted_at IS NULL "
            "RETURNING *", responder_id, *columns.values())
    if row is None:
        raise HTTPException(404, f"响应人 {responder_id} 不存在 / responder {responder_id} does not exist")
    return shown(row)


@router.delete("/responders/{responder_id}", status_code=204)
async def delete_responder(responder_id: str, principal: Admin, d: Deps) -> Response:
    async with d.pool.acquire() as conn, conn.transaction():
        found = await conn.fetchval(
            "UPDATE responders SET updated_by = $2 WHERE responder_id = $1 AND deleted_at IS NULL RETURNING 1",
            responder_id, principal.name)
        if found is None:
            raise HTTPException(404, f"响应人 {responder_id} 不存在 / responder {responder_id} does not exist")
        await conn.execute("SELECT mx_retire_responder($1)", responder_id)
    return Response(status_code=204)

"""Notification channels (CONTRACT §9 "Channels"): the `channels` table and its admin routes.

- `POST /api/v1/channels` `{"name", "type", "config", "endpoint"?}`: 201, 409 when the name is
  taken, 422 for a configuration the type does not take or an outbound target the policy refuses
  (the message names the address).
- `GET /api/v1/channels`: every channel, its secrets masked (a URL's `key` or `access_token` too).
- `PUT /api/v1/channels/{name}` `{"config", "endpoint"?}`: replaces the configuration.
- `DELETE /api/v1/channels/{name}`: 204, or 409 while a responder lists it. The row stays for the
  history of what it carried (`deleted_at`, configuration emptied); its group tokens are revoked;
  the name may be created again.
Configurations are validated, checked and masked by `channels.registry`; they are never logged.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Protocol, cast

import asyncpg
from fastapi import APIRouter, Depends, HTTPException, Query, Response
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection

from alerting.response.channels import registry
from devices.auth import Admin
from devices.cursors import int_cursor
from devices.outbound import OutboundPolicy, OutboundRefused

router = APIRouter(prefix="/api/v1", tags=["response"])

NAME_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


class ResponseDeps(Protocol):
    """What the response routes read of the running service."""

    @property
    def pool(self) -> asyncpg.Pool: ...

    @property
    def outbound(self) -> OutboundPolicy: ...


def deps(conn: HTTPConnection) -> ResponseDeps:
    return cast(ResponseDeps, conn.state.services)


Deps = Annotated[ResponseDeps, Depends(deps)]


class ChannelIn(BaseModel):
    name: str = Field(pattern=NAME_PATTERN)
    type: str
    config: dict[str, Any]
    endpoint: str | None = Field(None, max_length=2000)


class ChannelUpdate(BaseModel):
    config: dict[str, Any]
    endpoint: str | None = Field(None, max_length=2000)


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def shown(row: asyncpg.Record) -> dict[str, Any]:
    """A channel as the API shows it: secrets masked."""
    config = row["config"]
    config = registry.mask(row["type"], config if isinstance(config, dict) else _json(config))
    endpoint = row["endpoint"]
    return {"name": row["name"], "type": row["type"], "config": config,
            "endpoint": None if endpoint is None else registry.mask_url(endpoint),
            "group": row["type"] in registry.GROUP_TYPES, "updated_by": row["updated_by"],
            "created_at": _iso(row["created_at"]), "updated_at": _iso(row["updated_at"])}


def _json(value: Any) -> dict[str, Any]:
    loaded = json.loads(value) if isinstance(value, str) else value
    return loaded if isinstance(loaded, dict) else {}


async def _checked(kind: str, config: dict[str, Any], endpoint: str | None, policy: OutboundPolicy) -> dict[str, Any]:
    """The configuration as stored; 422 naming what is wrong or the refused address."""
    try:
        stored = registry.validate(kind, config, endpoint)
        await registry.check_outbound(kind, stored, endpoint, policy)
    except OutboundRefused as e:
        raise HTTPException(422, f"出站地址不允许 / outbound address not allowed: {e}") from None
    except ValueError as e:  # ChannelConfigError
        raise HTTPException(422, str(e)) from None
    return stored


_INSERT = """
INSERT INTO channels (name, type, config, endpoint, updated_by) VALUES ($1, $2, $3::jsonb, $4, $5)
ON CONFLICT (name) DO UPDATE SET type = EXCLUDED.type, config = EXCLUDED.config, endpoint = EXCLUDED.endpoint,
       updated_by = EXCLUDED.updated_by, created_at = now(), updated_at = now(), deleted_at = NULL
 WHERE channels.deleted_at IS NOT NULL
RETURNING *
"""


def _dumps(config: dict[str, Any]) -> str:
    return json.dumps(config, ensure_ascii=False)


@router.post("/channels", status_code=201)
async def create_channel(body: ChannelIn, principal: Admin, d: Deps) -> dict[str, Any]:
    stored = await _checked(body.type, body.config, body.endpoint, d.outbound)
    row = await d.pool.fetchrow(_INSERT, body.name, body.type, _dumps(stored), body.endpoint, principal.name)
    if row is None:
        raise HTTPException(409, f"渠道 {body.name} 已存在 / channel {body.name} exists")
    return shown(row)


@router.get("/channels")
async def list_channels(
    principal: Admin, d: Deps,
    type: Annotated[str | None, Query(description="channel type")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> dict[str, Any]:
    offset = int_cursor(cursor) if cursor is not None else 0
    rows = await d.pool.fetch(
        """SELECT * FROM channels WHERE deleted_at IS NULL AND ($1::text IS NULL OR type = $1)
           ORDER BY name OFFSET $2 LIMIT $3""", type, offset, limit + 1)
    return {"items": [shown(r) for r in rows[:limit]],
            "next_cursor": str(offset + limit) if len(rows) > limit else None}


@router.get("/channels/{name}")
async def get_channel(name: str, principal: Admin, d: Deps) -> dict[str, Any]:
    row = await d.pool.fetchrow("SELECT * FROM channels WHERE name = $1 AND deleted_at IS NULL", name)
    if row is None:
        raise HTTPException(404, f"渠道 {name} 不存在 / channel {name} does not exist")
    return shown(row)


@router.put("/channels/{name}")
async def replace_channel(name: str, body: ChannelUpdate, principal: Admin, d: Deps) -> dict[str, Any]:
    kind = await d.pool.fetchval("SELECT type FROM channels WHERE name = $1 AND deleted_at IS NULL", name)
    if kind is None:
        raise HTTPException(404, f"渠道 {name} 不存在 / channel {name} does not exist")
    stored = await _checked(kind, body.config, body.endpoint, d.outbound)
    row = await d.pool.fetchrow(
        """UPDATE channels SET config = $2::jsonb, endpoint = $3, updated_by = $4, updated_at = now()
            WHERE name = $1 AND deleted_at IS NULL RETURNING *""", name, _dumps(stored), body.endpoint, principal.name)
    if row is None:
        raise HTTPException(404, f"渠道 {name} 不存在 / channel {name} does not exist")
    return shown(row)


@router.delete("/channels/{name}", status_code=204)
async def delete_channel(name: str, principal: Admin, d: Deps) -> Response:
    async with d.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow("SELECT name FROM channels WHERE name = $1 AND deleted_at IS NULL FOR UPDATE", name)
        if row is None:
            raise HTTPException(404, f"渠道 {name} 不存在 / channel {name} does not exist")
        users = await conn.fetch(
            "SELECT responder_id FROM responders WHERE $1 = ANY(channels) AND deleted_at IS NULL ORDER BY 1 LIMIT 5",
            name)
        if users:
            listed = ", ".join(u["responder_id"] for u in users)
            raise HTTPException(409, f"渠道 {name} 仍被响应人使用（{listed}）/ channel {name} is listed by responders: "
                                     f"{listed}")
        await conn.execute(
            """UPDATE channels SET deleted_at = now(), config = '{}'::jsonb, endpoint = NULL, updated_by = $2,
                      updated_at = now() WHERE name = $1""", name, principal.name)
        await conn.execute(
            "UPDATE response_tokens SET revoked_at = now() WHERE group_channel = $1 AND revoked_at IS NULL", name)
    return Response(status_code=204)

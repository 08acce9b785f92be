"""Alarm routes (CONTRACT §5): list, detail with timeline, acknowledge, resolve, live streams.

Streams: `GET /api/v1/alarms/stream` is Server-Sent Events (`id:` = alarm_events.event_id,
`event: alarm`, `data:` the alarm object; `: keep-alive` comments when idle). It resumes after
the `Last-Event-ID` header or, for a page that reconnects by itself, the `last_event_id` query
parameter (the header wins: EventSource sets it on its own reconnects). Browsers' EventSource
cannot set headers, so the token may also come as `?token=` (it then appears in access logs:
give consoles a viewer token scoped to their regions). `WS /api/v1/alarms/ws` sends the same
events as JSON messages `{"id", "event", "data"}`; the token comes as `?token=` or in a first
message `{"token": "...", "last_event_id": "..."}`. A subscriber that falls behind is cut off
(SSE: the response ends; WebSocket: close code 1013) and resumes from its last event id.
A malformed event id is refused (SSE: 400; WebSocket: close code 1008 with the reason); one
ahead of the newest event (e.g. kept from another deployment's database) resumes from now.
`alarm_pending` events (no id) show an alarm decided while the database was unavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol, cast

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection

from alerting.lifecycle import Alarm, AlarmNotFound, Classification, InvalidTransition, loads, rfc3339, to_ms
from alerting.model import OPEN_STATUSES, AlarmType, Response, Severity
from alerting.notify import shown_detail
from alerting.response import alarm_view
from alerting.response.channels.registry import mask_url
from alerting.service import AlarmService
from alerting.stream import StreamEvent
from devices.auth import IndustryFilter, Operator, Principal, RegionFilter, Viewer, list_scope, principal_of
from devices.auth import deps as auth_deps
from devices.cursors import int_cursor

router = APIRouter(prefix="/api/v1/alarms", tags=["alarms"])
#: An event id as this stream sends it: ASCII digits (not `²` or `١٢٣`), below 2**63.
EVENT_ID = re.compile(r"[0-9]{1,18}")

STATUSES = (*OPEN_STATUSES, "cleared_ack", "resolved")
FILTER_VALUES = {
    "status": STATUSES,
    "severity": tuple(s.name for s in Severity),
    "type": tuple(t.name for t in AlarmType),
    "response": tuple(r.name for r in Response),
}


class AlarmDeps(Protocol):
    """What the alarm routes read of the running service."""

    @property
    def alarms(self) -> AlarmService: ...


def deps(conn: HTTPConnection) -> AlarmDeps:
    return cast(AlarmDeps, conn.state.services)


def alarm_service(d: Annotated[AlarmDeps, Depends(deps)]) -> AlarmService:
    return d.alarms


Alarms = Annotated[AlarmService, Depends(alarm_service)]
ListFilter = Annotated[list[str] | None, Query(description="one or more values, repeated or comma-separated")]


def _values(name: str, given: list[str] | None) -> list[str]:
    values = [v for item in given or [] for v in item.split(",") if v]
    bad = [v for v in values if v not in FILTER_VALUES[name]]
    if bad:
        raise HTTPException(422, f"unknown {name} {bad[0]!r}; expected one of {', '.join(FILTER_VALUES[name])}")
    return values


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


@router.get("")
async def list_alarms(
    principal: Viewer,
    alarms: Alarms,
    status: ListFilter = None,
    severity: ListFilter = None,
    type: ListFilter = None,
    response: ListFilter = None,
    region: RegionFilter = None,
    industry: IndustryFilter = None,
    unit_id: str | None = None,
    device_id: str | None = None,
    since: Annotated[datetime | None, Query(description="alarms seen or cleared at or after this time")] = None,
    until: Annotated[datetime | None, Query(description="alarms first seen at or before this time")] = None,
    top_level: Annotated[bool, Query(description="only alarms that are no incident's child (no parent_id)")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> dict[str, Any]:
    """Alarms newest first (by raise order), filtered; times are RFC 3339 UTC or epoch ms. An
    incident's parent lists its `children`; `top_level=true` leaves the children out."""
    clauses: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    for name, given in (("status", status), ("severity", severity), ("type", type), ("response", response)):
        if values := _values(name, given):
            clauses.append(f"{name} = ANY({arg(values)}::text[])")
    scope, scope_args = list_scope(principal, region, industry).sql(industry_col=UNIT_INDUSTRY, first=len(args) + 1)
    clauses.append(scope)
    args += scope_args
    if unit_id:
        clauses.append(f"unit_id = {arg(unit_id)}")
    if device_id:
        clauses.append(f"device_ids @> ARRAY[{arg(device_id)}::text]")
    if since:
        clauses.append(f"greatest(last_seen, cleared_at) >= {arg(_utc(since))}")
    if until:
        clauses.append(f"first_seen <= {arg(_utc(until))}")
    if top_level:
        clauses.append("parent_id IS NULL")
    if cursor is not None:
        clauses.append(f"alarm_id < {arg(int_cursor(cursor))}")
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = await alarms.pool.fetch(f"SELECT * FROM alarms {where} ORDER BY alarm_id DESC LIMIT {arg(limit + 1)}", *args)
    items = await _shown(alarms, principal, [Alarm.from_record(r).to_json() for r in rows[:limit]])
    return {"items": items, "next_cursor": items[-1]["alarm_id"] if len(rows) > limit else None}


@router.get("/stream", response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}})
async def alarm_stream(
    request: Request,
    alarms: Alarms,
    token: Annotated[str | None, Query(description="for EventSource, which cannot send Authorization")] = None,
    last_event_id: Annotated[str | None, Query(description="resume after this event id")] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Server-Sent Events of alarm changes, resuming after `Last-Event-ID` without gaps. A
    malformed id is 400; an id ahead of the newest event resumes from now (new alarms follow)."""
    principal = await _principal(request, token)
    after = _event_id(last_event_id_header or last_event_id)
    events = _in_industries(alarms.hub.events(principal.sees_region, after), principal, alarms)
    return StreamingResponse(
        _sse(events), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


@router.websocket("/ws")
async def alarm_ws(websocket: WebSocket, token: str | None = None, last_event_id: str | None = None) -> None:
    """The stream over WebSocket; token as `?token=` or in the first message."""
    try:
        if token is not None:
            principal = await _principal(websocket, token)
            await websocket.accept()
        else:
            await websocket.accept()
            first = await asyncio.wait_for(websocket.receive_json(), 10)
            token, last_event_id = first.get("token"), first.get("last_event_id", last_event_id)
            principal = await _principal(websocket, str(token or ""))
        after = _event_id(None if last_event_id is None else str(last_event_id))
    except (HTTPException, TimeoutError, ValueError, AttributeError) as e:
        reason = e.detail if isinstance(e, HTTPException) else "send {\"token\": ...} first"
        await websocket.close(1008, str(reason))
        return
    except WebSocketDisconnect:
        return
    service = deps(websocket).alarms
    sender = asyncio.create_task(_ws_send(websocket, service, principal, after))
    watcher = asyncio.create_task(_ws_watch(websocket))
    try:
        await asyncio.wait({sender, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, watcher):
            task.cancel()
        for task in (sender, watcher):
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await task


async def _ws_send(websocket: WebSocket, service: AlarmService, principal: Principal, after: int | None) -> None:
    async for event in _in_industries(service.hub.events(principal.sees_region, after), principal, service):
        if event is not None:  # uvicorn's WebSocket pings keep the connection alive
            await websocket.send_text(_json({"id": _id(event), "event": event.event, "data": event.data}))
    await websocket.close(1013, "cut off for falling behind; reconnect with last_event_id")


async def _ws_watch(websocket: WebSocket) -> None:
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass


@router.get("/{alarm_id}")
async def get_alarm(alarm_id: str, principal: Viewer, alarms: Alarms) -> dict[str, Any]:
    """The alarm with its evidence and rule, its timeline (every change, notifications included) and,
    under `notifications`, the attempts recorded by v1's notifier before the upgrade (credentials in
    their URLs masked); today's notifications are at `GET /api/v1/alarms/{alarm_id}/notifications`."""
    row = await alarms.pool.fetchrow(
        f"SELECT *, {UNIT_INDUSTRY} AS unit_industry FROM alarms WHERE alarm_id = $1", _alarm_id(alarm_id)
    )
    if row is None or not principal.sees(row["region"], row["unit_industry"]):
        raise HTTPException(404, f"alarm {alarm_id} does not exist")
    events = await alarms.pool.fetch(
        "SELECT event_id, at, action, actor, detail FROM alarm_events WHERE alarm_id = $1 ORDER BY event_id",
        row["alarm_id"],
    )
    attempts = await alarms.pool.fetch(
        "SELECT level, target, attempt, at, ok, detail FROM notification_attempts WHERE alarm_id = $1 ORDER BY id",
        row["alarm_id"],
    )
    audit = [
        {"event_id": str(e["event_id"]), "at": rfc3339(to_ms(e["at"])), "action": e["action"], "actor": e["actor"],
         "detail": loads(e["detail"])}
        for e in events
    ]
    (shown,) = await _shown(alarms, principal, [Alarm.from_record(row).to_json()])
    return {
        **shown,
        "timeline": alarm_view.merged(audit, await alarm_view.notification_entries(alarms.pool, row["alarm_id"])),
        "notifications": [
            {"level": a["level"], "target": mask_url(a["target"]), "attempt": a["attempt"],
             "at": rfc3339(to_ms(a["at"])), "ok": a["ok"], "detail": shown_detail(a["ok"], a["detail"])}
            for a in attempts
        ],
    }


class ResolveBody(BaseModel):
    classification: Classification
    note: str | None = Field(None, max_length=4000)


@router.post("/{alarm_id}/ack")
async def ack_alarm(alarm_id: str, principal: Operator, alarms: Alarms) -> dict[str, Any]:
    """Acknowledge: active_unack -> active_ack, cleared_unack -> cleared_ack; 409 otherwise."""
    await _check_industry(alarms, principal, alarm_id)
    try:
        alarm = await alarms.lifecycle.acknowledge(_alarm_id(alarm_id), principal.name, principal.sees_region)
    except AlarmNotFound as e:
        raise HTTPException(404, str(e)) from None
    except InvalidTransition as e:
        raise HTTPException(409, str(e)) from None
    return (await _shown(alarms, principal, [alarm.to_json()]))[0]


@router.post("/{alarm_id}/resolve")
async def resolve_alarm(alarm_id: str, body: ResolveBody, principal: Operator, alarms: Alarms) -> dict[str, Any]:
    """Resolve with a classification and a note (any status but resolved; 409 for a resolved alarm)."""
    await _check_industry(alarms, principal, alarm_id)
    try:
        alarm = await alarms.lifecycle.resolve(
            _alarm_id(alarm_id), body.classification, body.note, principal.name, principal.sees_region
        )
    except AlarmNotFound as e:
        raise HTTPException(404, str(e)) from None
    except InvalidTransition as e:
        raise HTTPException(409, str(e)) from None
    return (await _shown(alarms, principal, [alarm.to_json()]))[0]


# --- helpers ----------------------------------------------------------------------------------
#: an alarm's industry: its unit's (alarms of no unit have none)
UNIT_INDUSTRY = "(SELECT u.industry FROM units u WHERE u.unit_id = alarms.unit_id)"


async def _shown(alarms: AlarmService, principal: Principal, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Alarm objects with their v2 additions (unit, devices, response times), unit contacts'
    phone numbers only for operators and admins."""
    return await alarm_view.with_extras(
        alarms.pool, items, phones=principal.may("operator"), admin=principal.may("admin")
    )


async def _check_industry(alarms: AlarmService, principal: Principal, alarm_id: str) -> None:
    """404, as for an unknown alarm, when an industry-scoped token acts on an alarm of another
    industry (the lifecycle checks the region)."""
    if principal.industries:
        found = await alarms.pool.fetchval(
            f"SELECT {UNIT_INDUSTRY} = ANY($2::text[]) FROM alarms WHERE alarm_id = $1",
            _alarm_id(alarm_id), list(principal.industries),
        )
        if not found:
            raise HTTPException(404, f"alarm {alarm_id} does not exist")


def _in_industries(
    events: AsyncIterator[StreamEvent | None], principal: Principal, alarms: AlarmService
) -> AsyncIterator[StreamEvent | None]:
    """The stream's events of alarms whose unit is of the principal's industries (all when the
    token has no industry scope; the hub filters by region)."""
    return _industry_filtered(events, principal.industries, alarms) if principal.industries else events


async def _industry_filtered(
    events: AsyncIterator[StreamEvent | None], industries: tuple[str, ...], alarms: AlarmService
) -> AsyncIterator[StreamEvent | None]:
    industry_of: dict[str, str | None] = {}  # units' industries, read once per stream
    async for event in events:
        if event is not None:
            unit_id = str(event.data.get("unit_id") or "")
            if unit_id not in industry_of:
                industry_of[unit_id] = unit_id and await alarms.pool.fetchval(
                    "SELECT industry FROM units WHERE unit_id = $1", unit_id
                )
            if industry_of[unit_id] not in industries:
                continue
        yield event


async def _principal(conn: HTTPConnection, token: str | None) -> Principal:
    """The caller of a stream: the Authorization header, or a token given in the query or a message."""
    authorization = f"Bearer {token}" if token is not None else conn.headers.get("authorization", "")
    return await principal_of(auth_deps(conn), authorization)


def _alarm_id(text: str) -> int:
    if not EVENT_ID.fullmatch(text):  # ASCII digits within bigint, like event ids
        raise HTTPException(404, f"alarm {text} does not exist")
    return int(text)


def _event_id(text: str | None) -> int | None:
    """A resume point: an event id (ASCII digits, within bigint); anything else is 400."""
    if text is None or text == "":
        return None
    if not EVENT_ID.fullmatch(text.strip()):
        raise HTTPException(400, "Last-Event-ID 不是本流的事件 id / Last-Event-ID is not an event id of this stream")
    return int(text)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _id(event: StreamEvent) -> str | None:
    return None if event.event_id is None else str(event.event_id)


async def _sse(events: AsyncIterator[StreamEvent | None]) -> AsyncIterator[str]:
    yield "retry: 2000\n\n"
    async for event in events:
        if event is None:
            yield ": keep-alive\n\n"
        elif event.event_id is None:
            yield f"event: {event.event}\ndata: {_json(event.data)}\n\n"
        else:
            yield f"id: {event.event_id}\nevent: {event.event}\ndata: {_json(event.data)}\n\n"

"""What ingest stored, for the API (CONTRACT §5): a device's readings
(`GET /api/v1/devices/{device_id}/readings`, viewers) and the rejected input kept as dead letters
(`GET /api/v1/dead-letters`, admins).

Both tables are written by `ingest.storage`; this is the API's one reader of them. Who may see a
device is the devices package's rule (`devices.api.visible_device`).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol, cast

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from devices.api import Cursor, Limit, visible_device
from devices.auth import Admin, Viewer
from devices.cursors import int_cursor, time_cursor
from devices.service import DeviceService

router = APIRouter(prefix="/api/v1", tags=["devices"])


class ReadingsDeps(Protocol):
    """What these routes read of the running service."""

    @property
    def devices(self) -> DeviceService: ...


def deps(request: Request) -> ReadingsDeps:
    return cast(ReadingsDeps, request.state.services)


def _instant(value: str | None, name: str) -> datetime | None:
    """Epoch milliseconds or an RFC 3339 time."""
    if value is None:
        return None
    try:
        if value.lstrip("-").isdigit():
            return datetime.fromtimestamp(int(value) / 1000, UTC)
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise HTTPException(422, f"{name} must be epoch milliseconds or an RFC 3339 time") from None


@router.get("/devices/{device_id}/readings")
async def device_readings(
    device_id: str,
    principal: Viewer,
    d: Annotated[ReadingsDeps, Depends(deps)],
    from_: Annotated[str | None, Query(alias="from", description="epoch ms or RFC 3339, inclusive")] = None,
    to: Annotated[str | None, Query(description="epoch ms or RFC 3339, exclusive")] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Stored readings of a device, newest first."""
    await visible_device(d.devices, principal, device_id)
    before: tuple[datetime, int] | None = None
    if cursor is not None:
        at, dedup = time_cursor(cursor)
        before = (at, int_cursor(dedup))
    rows = await d.devices.pool.fetch(
        """SELECT ts, received_at, seq, dedup, kind, event, component, metrics, extra, source FROM readings
           WHERE device_id = $1 AND ($2::timestamptz IS NULL OR ts >= $2) AND ($3::timestamptz IS NULL OR ts < $3)
             AND ($4::timestamptz IS NULL OR (ts, dedup) < ($4, $5::bigint))
           ORDER BY ts DESC, dedup DESC LIMIT $6""",
        device_id, _instant(from_, "from"), _instant(to, "to"),
        before[0] if before else None, before[1] if before else None, limit,
    )
    items = [
        {"device_id": device_id, "ts": r["ts"], "received_at": r["received_at"], "seq": r["seq"], "kind": r["kind"],
         "event": r["event"], "component": r["component"], "metrics": json.loads(r["metrics"]),
         "extra": json.loads(r["extra"]) if r["extra"] else None, "source": r["source"]}
        for r in rows
    ]
    last = rows[-1] if len(rows) == limit else None
    next_cursor = f"{round(last['ts'].timestamp() * 1_000_000)}:{last['dedup']}" if last else None
    return {"items": items, "next_cursor": next_cursor}


@router.get("/dead-letters")
async def list_dead_letters(
    principal: Admin,
    d: Annotated[ReadingsDeps, Depends(deps)],
    transport: Annotated[str | None, Query(description="mqtt, http:<platform>, tcp")] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Rejected input, newest first, with the raw bytes in base64."""
    after = int_cursor(cursor) if cursor is not None else None
    rows = await d.devices.pool.fetch(
        """SELECT id, received_at, transport, source, reason, raw FROM dead_letters
           WHERE ($1::text IS NULL OR transport = $1) AND ($2::bigint IS NULL OR id < $2)
           ORDER BY id DESC LIMIT $3""",
        transport, after, limit,
    )
    items = [{**dict(r), "raw": base64.b64encode(bytes(r["raw"])).decode()} for r in rows]
    return {"items": items, "next_cursor": str(items[-1]["id"]) if len(items) == limit else None}

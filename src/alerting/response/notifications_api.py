"""`GET /api/v1/alarms/{alarm_id}/notifications` (viewer, CONTRACT §9): who was told what.

One item per notification row (a responder's or a group robot's): level, reason, state
(`queued`, `sent`, `failed`, `acked`), the channel that carried it (or was last tried), times,
error class and provider code, the row whose message carried it (`digest_of`), and every attempt.
Responders' phone numbers appear only to operators and admins.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException

from alerting.response.channels.store import Deps
from devices.auth import Viewer

router = APIRouter(prefix="/api/v1/alarms", tags=["response"])

_ROWS = """
SELECT n.*, r.name AS responder_name, r.role AS responder_role, r.phone AS responder_phone,
       c.type AS channel_type
  FROM notifications n LEFT JOIN responders r ON r.responder_id = n.responder_id
  LEFT JOIN channels c ON c.name = n.channel
 WHERE n.alarm_id = $1 ORDER BY n.id
"""
_SENDS = """SELECT s.* FROM notification_sends s JOIN notifications n ON n.id = s.notification_id
             WHERE n.alarm_id = $1 ORDER BY s.id"""


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@router.get("/{alarm_id}/notifications")
async def alarm_notifications(alarm_id: str, principal: Viewer, d: Deps) -> dict[str, Any]:
    if not (alarm_id.isascii() and alarm_id.isdigit()) or len(alarm_id) > 18:  # not `²`
        raise HTTPException(404, f"alarm {alarm_id} does not exist")
    alarm = await d.pool.fetchrow(
        """SELECT a.alarm_id, a.region, (SELECT u.industry FROM units u WHERE u.unit_id = a.unit_id) AS industry
             FROM alarms a WHERE a.alarm_id = $1""", int(alarm_id))
    if alarm is None or not principal.sees(alarm["region"], alarm["industry"]):
        raise HTTPException(404, f"alarm {alarm_id} does not exist")
    rows = await d.pool.fetch(_ROWS, alarm["alarm_id"])
    sends: dict[int, list[dict[str, Any]]] = {}
    for s in await d.pool.fetch(_SENDS, alarm["alarm_id"]):
        sends.setdefault(s["notification_id"], []).append({
            "channel": s["channel"], "attempt": s["attempt"], "at": _iso(s["at"]), "ok": s["ok"],
            "error_class": s["error_class"], "provider_code": s["provider_code"]})
    phones = principal.may("operator")
    items = []
    for n in rows:
        responder = None
        if n["responder_id"] is not None:
            responder = {"responder_id": n["responder_id"], "name": n["responder_name"], "role": n["responder_role"]}
            if phones:
                responder["phone"] = n["responder_phone"]
        items.append({
            "notification_id": str(n["id"]), "level": n["level"], "reason": n["reason"], "responder": responder,
            "group_channel": n["group_channel"], "channel": n["channel"], "channel_type": n["channel_type"],
            "state": n["state"], "attempts": n["attempts"], "error_class": n["error_class"],
            "provider_code": n["provider_code"], "digest_of": None if n["digest_of"] is None else str(n["digest_of"]),
            "created_at": _iso(n["created_at"]), "sent_at": _iso(n["sent_at"]), "done_at": _iso(n["done_at"]),
            "sends": sends.get(n["id"], []),
        })
    return {"items": items}

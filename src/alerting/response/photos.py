"""Feedback photos for operators: `GET /api/v1/alarms/{alarm_id}/photos/{action_id}` (viewer,
within the token's scope), the re-encoded JPEG or PNG a responder sent with a feedback
(`alerting.response.page`); the feedback's timeline row names this address as `photo_url`."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response

from alerting.api import Alarms, _alarm_id
from devices.auth import Viewer

router = APIRouter(prefix="/api/v1/alarms", tags=["alarms"])


def photo_url(alarm_id: int, action_id: int) -> str:
    return f"/api/v1/alarms/{alarm_id}/photos/{action_id}"


@router.get("/{alarm_id}/photos/{action_id}", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}})
async def feedback_photo(alarm_id: str, action_id: str, principal: Viewer, alarms: Alarms) -> Response:
    """The photo of a responder's feedback on this alarm; 404 when there is none or the alarm is
    outside the caller's scope."""
    row = await alarms.pool.fetchrow(
        """SELECT ra.photo, ra.photo_type, a.region, u.industry
             FROM responder_actions ra JOIN alarms a USING (alarm_id) LEFT JOIN units u ON u.unit_id = a.unit_id
            WHERE ra.alarm_id = $1 AND ra.id = $2 AND ra.photo IS NOT NULL""",
        _alarm_id(alarm_id), _alarm_id(action_id),
    )
    if row is None or not principal.sees(row["region"], row["industry"]):
        raise HTTPException(404, "照片不存在 / no such photo")
    return Response(bytes(row["photo"]), media_type=row["photo_type"],
                    headers={"Cache-Control": "private, max-age=3600", "Content-Disposition": "inline"})

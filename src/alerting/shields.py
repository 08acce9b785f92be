"""`GET /api/v1/uitd/{device_id}/shielded`: the panel points a transmission device reports shielded
(屏蔽, CONTRACT §4 status bit 3), kept by `devices.shielded` (the owner of `panel_shields`), to
which the composition root hands the readings the GB/T 26875 listener submits. Risk grading counts
them per unit (docs/risk.md).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from alerting.api import Alarms
from devices import registry, shielded
from devices.auth import Viewer

router = APIRouter(prefix="/api/v1", tags=["supervision"])


@router.get("/uitd/{device_id}/shielded")
async def shielded_points(device_id: str, principal: Viewer, alarms: Alarms) -> dict[str, Any]:
    """The panel points this transmission device reports shielded now, longest first."""
    device = await registry.get_device(alarms.pool, device_id)
    if device is None:
        raise HTTPException(404, f"无此设备 / unknown device {device_id}")
    if not principal.sees(device["region"], device["industry"]):
        raise HTTPException(403, f"device {device_id} is outside your regions")
    rows = await shielded.open_points(alarms.pool, device_id)
    return {
        "device_id": device_id,
        "items": [{"point": r["component"], "since": r["since"].isoformat(), "description": r["description"]}
                  for r in rows],
    }

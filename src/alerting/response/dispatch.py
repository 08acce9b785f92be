"""Dispatch (CONTRACT §9): an operator confirms a real fire, and micro fire stations and the fire
brigade are told at once, whatever the escalation level.

Who (`select`, pure): the 3 on-duty `micro_station` responders nearest the unit by great-circle
distance (haversine on WGS-84 coordinates as given: the service never converts GCJ-02 or BD-09),
else, when the unit or no station has a location, the on-duty micro stations whose scope
matches the unit most closely; and the on-duty `fire_brigade` responders whose scope matches it
most closely (the unit itself, else the longest region prefix, else an empty scope).
`POST /api/v1/alarms/{alarm_id}/dispatch` sets `dispatched_at`/`dispatched_by` and writes one
`notifications` row (reason `dispatch`, level 2 for stations, 3 for the brigade) per responder in
the alarm's transaction, with a `dispatched` audit row on its timeline; the notifier sends them.
A resolved alarm is 409; a second dispatch sends nothing new; an acknowledgement never cancels one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Body, HTTPException
from pydantic import BaseModel, Field

from alerting.api import Alarms, _alarm_id, _shown
from alerting.lifecycle import Alarm, AlarmNotFound, Change, InvalidTransition, to_dt
from alerting.response.outbox import responder_from
from alerting.response.targets import LEVEL_ROLES, Responder
from devices.auth import Operator

router = APIRouter(prefix="/api/v1/alarms", tags=["alarms"])

#: mean Earth radius of WGS-84 (IUGG), metres
EARTH_RADIUS_M = 6_371_008.8
NEAREST = 3
MICRO_STATION, FIRE_BRIGADE = "micro_station", "fire_brigade"
LEVEL = {MICRO_STATION: LEVEL_ROLES.index(MICRO_STATION), FIRE_BRIGADE: LEVEL_ROLES.index(FIRE_BRIGADE)}

LatLon = tuple[float, float]


def distance_m(a: LatLon, b: LatLon) -> float:
    """Great-circle distance between two WGS-84 points (haversine), metres."""
    (lat1, lon1), (lat2, lon2) = (map(math.radians, p) for p in (a, b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def lat_lon(raw: Any) -> LatLon | None:
    """`{"lat", "lon"}` as numbers within range, else None (no location)."""
    raw = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(raw, Mapping):
        return None
    lat, lon = raw.get("lat"), raw.get("lon")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in (lat, lon)):
        return None
    assert isinstance(lat, int | float) and isinstance(lon, int | float)
    return (float(lat), float(lon)) if -90 <= lat <= 90 and -180 <= lon <= 180 else None


@dataclass(frozen=True, slots=True)
class Candidate:
    responder: Responder
    location: LatLon | None = None


@dataclass(frozen=True, slots=True)
class Unit:
    unit_id: str | None
    region: str
    location: LatLon | None = None


def select(unit: Unit, candidates: Sequence[Candidate], local: datetime) -> list[tuple[str, int]]:
    """Whom a dispatch tells, as (responder_id, level): micro stations first (nearest first),
    then the fire brigade. `local`: now in MIAOXIANG_DEVICE_TZ, for on-duty windows."""
    on_duty = [c for c in candidates if c.responder.on_duty_at(local)]
    stations = [c for c in on_duty if c.responder.role == MICRO_STATION]
    located = [(c, c.location) for c in stations if c.location is not None]
    if unit.location is not None and located:
        here = unit.location
        ranked = sorted(located, key=lambda cl: (distance_m(here, cl[1]), cl[0].responder.responder_id))
        chosen = [c for c, _ in ranked[:NEAREST]]
    else:
        chosen = closest(unit, stations)
    chosen += closest(unit, [c for c in on_duty if c.responder.role == FIRE_BRIGADE])
    return [(c.responder.responder_id, LEVEL[c.responder.role]) for c in chosen]


def closest(unit: Unit, candidates: Sequence[Candidate]) -> list[Candidate]:
    """The candidates whose scope matches the unit most closely (the unit itself, else the
    longest region prefix, else an empty scope), by id."""
    matched = [(c.responder.match(unit.unit_id, unit.region), c) for c in candidates]
    best = max((m for m, _ in matched), default=-1)
    return [] if best < 0 else sorted((c for m, c in matched if m == best), key=lambda c: c.responder.responder_id)


# --- I/O -------------------------------------------------------------------------------------
_CANDIDATES = """
SELECT responder_id, role, regions, unit_ids, on_duty, location FROM responders
 WHERE deleted_at IS NULL AND role IN ('micro_station', 'fire_brigade')
"""
_INSERT = """
INSERT INTO notifications (alarm_id, event_id, level, reason, responder_id)
SELECT $1, $2, t.level, 'dispatch', t.responder_id FROM unnest($3::text[], $4::smallint[]) AS t (responder_id, level)
ON CONFLICT DO NOTHING
"""


class DispatchBody(BaseModel):
    note: str | None = Field(None, max_length=500)


async def _chosen(conn: asyncpg.Connection, alarm: Alarm, local: datetime) -> list[tuple[str, int]]:
    unit = await conn.fetchrow("SELECT region, location FROM units WHERE unit_id = $1", alarm.unit_id)
    place = Unit(alarm.unit_id, alarm.region or (unit["region"] if unit else ""),
                 lat_lon(unit["location"]) if unit else None)
    rows = await conn.fetch(_CANDIDATES)
    return select(place, [Candidate(responder_from(r), lat_lon(r["location"])) for r in rows], local)


@router.post("/{alarm_id}/dispatch")
async def dispatch(
    alarm_id: str, principal: Operator, alarms: Alarms, body: Annotated[DispatchBody | None, Body()] = None
) -> dict[str, Any]:
    """Confirm a real fire: the nearest micro stations and the fire brigade are told at once."""
    lifecycle = alarms.lifecycle
    note = body.note if body else None
    chosen: list[tuple[str, int]] = []

    async def step(conn: asyncpg.Connection, alarm: Alarm, now_ms: int) -> Change | None:
        if not principal.sees(alarm.region, await conn.fetchval(
                "SELECT industry FROM units WHERE unit_id = $1", alarm.unit_id)):
            raise AlarmNotFound(alarm.alarm_id)
        if alarm.status == "resolved":
            raise InvalidTransition(alarm.alarm_id, alarm.status, "dispatched")
        if alarm.dispatched_at_ms is not None:
            return None  # a second dispatch sends nothing new
        now = to_dt(now_ms)
        await conn.execute("UPDATE alarms SET dispatched_at = $2, dispatched_by = $3 WHERE alarm_id = $1",
                           alarm.alarm_id, now, principal.name)
        chosen.extend(await _chosen(conn, alarm, now.astimezone(lifecycle.tz)))
        detail = {"note": note, "responders": [r for r, _ in chosen]}
        return Change(replace(alarm, dispatched_at_ms=now_ms), "dispatched", detail, actor=principal.name)

    async def then(conn: asyncpg.Connection, change: Change) -> None:
        await conn.execute(_INSERT, change.alarm.alarm_id, change.event_id, [r for r, _ in chosen],
                           [level for _, level in chosen])

    number = _alarm_id(alarm_id)
    try:
        await lifecycle.act(number, step, then)
    except AlarmNotFound as e:
        raise HTTPException(404, str(e)) from None
    except InvalidTransition as e:
        raise HTTPException(409, f"告警已处置，不能调派 / {e}") from None
    row = await alarms.pool.fetchrow("SELECT * FROM alarms WHERE alarm_id = $1", number)
    return (await _shown(alarms, principal, [Alarm.from_record(row).to_json()]))[0]

"""The daily online sample behind the monthly report's mean online rate (联网率): once a local day,
the registered and online devices per (region, industry) from the live fleet into
`online_samples`. Devices of no unit, panel components and quarantined devices are left out."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import asyncpg
import numpy as np

from devices.clock import Clock
from devices.fleet import ONLINE, QUARANTINED, Fleet
from devices.fleet_query import live_flags

log = logging.getLogger(__name__)
#: How often the job looks whether today's sample is taken.
CHECK_EVERY_S = 600.0


def counts(fleet: Fleet, unit_place: dict[str, tuple[str, str]]) -> dict[tuple[str, str], tuple[int, int]]:
    """(region, industry) -> (registered, online) of the fleet's devices now."""
    n = fleet.size
    flags = live_flags(fleet, slice(0, n))
    unit = fleet.unit[:n]
    keep = (unit >= 0) & (fleet.parent[:n] < 0) & ((flags & QUARANTINED) == 0)
    registered: Counter[tuple[str, str]] = Counter()
    online: Counter[tuple[str, str]] = Counter()
    for slot in np.flatnonzero(keep):
        place = unit_place.get(fleet.units.names[int(unit[slot])])
        if place is not None:
            registered[place] += 1
            online[place] += bool(flags[slot] & ONLINE)
    return {k: (registered[k], online[k]) for k in registered}


async def take(pool: asyncpg.Pool, fleet: Fleet, now: datetime, tz: ZoneInfo) -> bool:
    """Take today's sample unless it is taken; answer whether this call took it."""
    day = now.astimezone(tz).date()
    if await pool.fetchval("SELECT 1 FROM online_samples WHERE day = $1 LIMIT 1", day):
        return False
    places = {r["unit_id"]: (r["region"], r["industry"])
              for r in await pool.fetch("SELECT unit_id, region, industry FROM units")}
    rows = [(day, region, industry, reg, on, now) for (region, industry), (reg, on) in counts(fleet, places).items()]
    await pool.executemany(
        "INSERT INTO online_samples (day, region, industry, registered, online, taken_at) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING", rows,
    )
    return True


async def run(pool: asyncpg.Pool, fleet: Fleet, clock: Clock, tz: ZoneInfo) -> None:
    """Take the day's sample when due, until cancelled (failures are logged and retried)."""
    while True:
        try:
            await take(pool, fleet, datetime.fromtimestamp(clock() / 1000, ZoneInfo("UTC")), tz)
        except (asyncpg.PostgresError, OSError) as e:
            log.warning("online sample not taken: %r", e)
        await asyncio.sleep(CHECK_EVERY_S)

"""Keep a worker's fleet registry in step with devices and units registered through another process.

A scaled-out worker loads the registry once at start; registrations, imports, maintenance and
threshold changes then happen in the API process. Every `interval_s` this reads the units and
devices whose `updated_at` moved, with an overlap (`updated_at` is the writing transaction's
start, which may commit later), and folds them into the fleet; live state is kept
(`Fleet.bulk_load`), so reading a row twice is harmless. A unit whose thresholds changed has every
device of it re-set (`devices.thresholds`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta

import asyncpg

from devices.db_errors import UNAVAILABLE
from devices.fleet import Fleet
from devices.registry import unit_devices
from devices.thresholds import ThresholdLayers

log = logging.getLogger(__name__)

OVERLAP = timedelta(seconds=30)
_UNITS = "SELECT unit_id, region, maintenance, thresholds FROM units WHERE updated_at > $1"
_DEVICES = """SELECT device_id, kind, unit_id, cell_id, heartbeat_s, parent_id, maintenance, quarantined, thresholds,
                     profile
              FROM devices WHERE updated_at > $1 ORDER BY (parent_id IS NOT NULL), device_id"""


async def refresh(pool: asyncpg.Pool, fleet: Fleet, since: datetime, layers: ThresholdLayers) -> int:
    """Fold units and devices changed after `since` into the fleet; answer how many devices."""
    relayered = []
    for u in await pool.fetch(_UNITS, since):
        fleet.set_unit(u["unit_id"], region=u["region"], maintenance=u["maintenance"])
        if layers.set_unit(u["unit_id"], json.loads(u["thresholds"])):
            relayered.append(u["unit_id"])
    rows = await pool.fetch(_DEVICES, since)
    if rows:
        fleet.bulk_load(
            [r["device_id"] for r in rows], [r["kind"] for r in rows],
            unit_ids=[r["unit_id"] for r in rows], cell_ids=[r["cell_id"] for r in rows],
            heartbeat_s=[r["heartbeat_s"] for r in rows], parent_ids=[r["parent_id"] for r in rows],
            maintenance=[r["maintenance"] for r in rows], quarantined=[r["quarantined"] for r in rows],
        )
    for r in [*rows, *(await unit_devices(pool, relayered) if relayered else ())]:
        layers.apply(fleet, r["device_id"], json.loads(r["thresholds"]), r["profile"], r["unit_id"])
    return len(rows)


async def follow_registry(
    pool: asyncpg.Pool, fleet: Fleet, interval_s: float, layers: ThresholdLayers | None = None
) -> None:
    """Until cancelled, refresh every `interval_s`, from the database's clock at the start;
    `layers`: the profile and unit thresholds beneath the devices' own (the worker's `DeviceService.layers`)."""
    layers = layers or ThresholdLayers()
    since: datetime = await pool.fetchval("SELECT now()") - OVERLAP
    while True:
        await asyncio.sleep(interval_s)
        try:
            now: datetime = await pool.fetchval("SELECT now()")
            count = await refresh(pool, fleet, since, layers)
        except (*UNAVAILABLE, asyncpg.PostgresError) as e:
            log.warning("registry refresh failed (%s); retrying", e)
            continue
        if count:
            log.info("registry refresh: %d devices changed elsewhere", count)
        since = now - OVERLAP

"""The devices package at run time: registry -> fleet at start, checkpoints, command deadlines.

`load()` runs once before ingest starts: units, then every device (`Fleet.bulk_load`), then the
last checkpoint of live state (the `fleet_snapshot` and the `device_state` rows written since,
`devices.checkpoint`), then commands still waiting for an answer. `run()` checks command
deadlines every `tick_s`, writes the fleet's changed slots to `device_state` every
`checkpoint_interval_s` and a whole snapshot every `snapshot_interval_s` (at once when the load
found none), and both once more when cancelled, so a restart resumes with last_seen, status and
values instead of `unknown` everywhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

import asyncpg
import numpy as np
import orjson

from devices.checkpoint import (
    SNAPSHOT_COLUMNS,
    SNAPSHOT_QUERY,
    STATE_QUERY,
    VALUES_QUERY,
    Snapshot,
    checkpoint_rows,
    decode_snapshot,
    restore_snapshot,
    restore_state,
    snapshot_records,
)
from devices.clock import Clock
from devices.commands import DB_ERRORS, CommandService, PlatformState
from devices.fleet import FLAPPING, OFFLINE, Fleet
from devices.importer import Format, ImportReport, Progress, import_devices, register_in_fleet
from devices.registry import DeviceSpec, load_devices, load_units, register_device, unit_devices
from devices.thresholds import ThresholdLayers, Thresholds, fleet_row, shown

log = logging.getLogger(__name__)

CHECKPOINT_CHUNK = 2_000  # rows per checkpoint transaction: about 7 ms of event loop each (200,000: 0.7 s)
STATE_COLUMNS = ("device_id", "last_seen", "status", "battery_pct", "rsrp_dbm", "last_values", "flags", "updated_at")


class DeviceService:
    """Registry, fleet and commands together; what the devices API works with.

    `profile_thresholds` (profile name -> thresholds, from the composition root) and the units'
    thresholds are the layers beneath each device's own (`devices.thresholds`); the fleet holds
    the merge, which a confirmed `set_thresholds` command takes from the same layers."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        fleet: Fleet,
        commands: CommandService,
        *,
        clock: Clock,
        checkpoint_interval_s: float = 30.0,
        snapshot_interval_s: float = 600.0,
        tick_s: float = 1.0,
        profile_thresholds: Mapping[str, Thresholds] | None = None,
    ) -> None:
        self.pool = pool
        self.fleet = fleet
        self.commands = commands
        self.clock = clock
        self.checkpoint_interval_s = checkpoint_interval_s
        self.snapshot_interval_s = snapshot_interval_s
        self.tick_s = tick_s
        self.snapshot_due = True  # until a load finds a snapshot
        self.layers = commands.layers = ThresholdLayers(profile_thresholds)

    async def load(self) -> int:
        """Fill the fleet from the registry and the last checkpoint; answer the number of devices."""
        fleet = self.fleet
        # Queries at once: PostgreSQL builds the next result sets while this process decodes
        # the first (a million devices: 15.0 s to load one after the other on this machine).
        units, devices, (snapshot, state, values) = await asyncio.gather(
            load_units(self.pool), load_devices(self.pool, self.layers.profiles), self._saved_state()
        )
        for u in units:
            fleet.set_unit(u["unit_id"], region=u["region"], maintenance=u["maintenance"])
            self.layers.set_unit(u["unit_id"], json.loads(u["thresholds"]))
        fleet.bulk_load(
            devices.device_ids,
            devices.kinds,
            unit_ids=devices.unit_ids,
            cell_ids=devices.cell_ids,
            heartbeat_s=devices.heartbeat_s,
            parent_ids=devices.parent_ids,
            maintenance=devices.maintenance,
            quarantined=devices.quarantined,
            hydrant=devices.hydrant,
        )
        self._load_thresholds(devices.thresholds)
        saved = 0 if snapshot is None else restore_snapshot(fleet, snapshot)
        rows = restore_state(fleet, state, values)  # written since the snapshot, or all without one
        del snapshot, state, values
        self.snapshot_due = saved == 0 or rows > max(10_000, fleet.size // 10)  # none, or a long journal
        saved = max(saved, rows)
        resumed = await self.commands.load()
        log.info("fleet loaded: %d devices, %d with saved state, %d commands awaiting an answer",
                 len(devices.device_ids), saved, resumed)
        return len(devices.device_ids)

    def _load_thresholds(self, layered: dict[str, tuple[str, str | None]]) -> None:
        """Effective thresholds into the fleet at load: of the devices with their own or a profile's
        (`layered`: own as JSON text, profile), and of every other device of a unit that has some
        (one row per unit)."""
        fleet, layers = self.fleet, self.layers
        rows = {fleet.units.get(unit_id): fleet_row(t) for unit_id, t in layers.units.items()}
        unit_of = fleet.unit[: fleet.size]
        for slot in np.flatnonzero(np.isin(unit_of, list(rows))).tolist():  # one pass, however many units
            if fleet.device_ids[slot] not in layered:
                fleet.set_thresholds(slot, rows[int(unit_of[slot])])
        units = fleet.units.names
        for device_id, (own, profile) in layered.items():
            unit = int(unit_of[fleet.slot(device_id)])
            layers.apply(fleet, device_id, json.loads(own), profile, units[unit] if unit >= 0 else None)

    async def unit_saved(self, unit: Mapping[str, Any]) -> int:
        """A unit was created or replaced (`registry.upsert_unit`): its region and maintenance into
        the fleet and, when its thresholds changed, every device of it re-set; answer how many."""
        unit_id = unit["unit_id"]
        self.fleet.set_unit(unit_id, region=unit["region"], maintenance=unit["maintenance"])
        if not self.layers.set_unit(unit_id, unit["thresholds"]):
            return 0
        rows = await unit_devices(self.pool, [unit_id])
        for r in rows:
            self.layers.apply(self.fleet, r["device_id"], json.loads(r["thresholds"]), r["profile"], unit_id)
        return len(rows)

    def effective_thresholds(self, device: Mapping[str, Any]) -> dict[str, float | None]:
        """Every threshold of a registered device (`registry.device_dict`) as it applies: its own,
        else its profile's, else its unit's, else the default (None: the rule is off)."""
        return shown(self.layers.of(device["thresholds"], device["profile"], device["unit_id"]))

    async def _saved_state(self) -> tuple[Snapshot | None, Any, list[Any]]:
        """The snapshot and the `device_state` rows written since it (every row without one)."""
        snapshot = decode_snapshot(await self.pool.fetch(SNAPSHOT_QUERY))
        since = None if snapshot is None else snapshot.taken_at
        state, values = await asyncio.gather(self.pool.fetchrow(STATE_QUERY, since),
                                             self.pool.fetch(VALUES_QUERY, since))
        return snapshot, state, values

    async def checkpoint(self) -> int:
        """Write the slots changed since the last checkpoint to `device_state`; answer how many.
        In chunks of `CHECKPOINT_CHUNK`, each its own transaction: after a reconnect storm that
        is 200,000 rows, whose rows and JSON would otherwise hold the event loop (and the alarms
        waiting on it) for a second and more in one go."""
        slots = self.fleet.take_dirty()
        written = 0
        for start in range(0, slots.size, CHECKPOINT_CHUNK):
            rows = [(*r[:5], orjson.dumps(r[5]).decode(), r[6])
                    for r in checkpoint_rows(self.fleet, slots[start: start + CHECKPOINT_CHUNK])]
            try:
                await self._write_state(rows)
            except BaseException:
                self.fleet.mark_dirty(slots[start:])
                raise
            written += len(rows)
        return written

    async def snapshot(self) -> int:
        """Replace the fleet snapshot with the fleet's state now; answer the devices in it."""
        async with self.pool.acquire() as conn, conn.transaction():
            # taken_at (now(), the transaction's start) is before the state is read: a
            # `device_state` row written meanwhile is read again at start-up, never missed
            await conn.execute("DELETE FROM fleet_snapshot")
            records = snapshot_records(self.fleet)
            await conn.copy_records_to_table("fleet_snapshot", records=records, columns=SNAPSHOT_COLUMNS)
        self.snapshot_due = False
        return self.fleet.size

    async def _write_state(self, rows: list[tuple[Any, ...]]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS device_state_stage (LIKE device_state INCLUDING DEFAULTS) "
                "ON COMMIT DELETE ROWS"
            )
            await conn.copy_records_to_table("device_state_stage", records=rows, columns=STATE_COLUMNS[:-1])
            await conn.execute(
                f"""INSERT INTO device_state ({', '.join(STATE_COLUMNS)})
                    SELECT {', '.join(STATE_COLUMNS[:-1])}, now() FROM device_state_stage
                    ON CONFLICT (device_id) DO UPDATE
                    SET {', '.join(f'{c} = EXCLUDED.{c}' for c in STATE_COLUMNS[1:])}"""
            )

    async def run(self) -> None:
        """Command deadlines every tick, checkpoints every interval, a last checkpoint on cancel."""
        loop = asyncio.get_running_loop()
        next_checkpoint = loop.time() + self.checkpoint_interval_s
        next_snapshot = loop.time() + self.snapshot_interval_s
        try:
            while True:
                await asyncio.sleep(self.tick_s)
                try:
                    await self.commands.expire()
                    if loop.time() >= next_checkpoint:
                        next_checkpoint = loop.time() + self.checkpoint_interval_s
                        await self.checkpoint()
                    if self.snapshot_due or loop.time() >= next_snapshot:
                        next_snapshot = loop.time() + self.snapshot_interval_s
                        await self.snapshot()
                except DB_ERRORS as e:
                    log.error("device state work failed (%s); retrying next tick", e)
        except asyncio.CancelledError:
            try:
                await asyncio.wait_for(self.checkpoint(), 5)
                await asyncio.wait_for(self.snapshot(), 10)  # after the rows: the next start reads none of them
            except (*DB_ERRORS, asyncio.CancelledError, TimeoutError) as e:
                log.warning("final checkpoint not written: %s", e)
            raise

    async def register(self, spec: DeviceSpec) -> dict[str, Any]:
        """Register one device in the registry and the fleet. Raises `KindConflict`, `UnknownUnit`."""
        async with self.pool.acquire() as conn:
            reg = await register_device(conn, spec)
        register_in_fleet(self.fleet, spec, reg, self.layers)
        return {"device_id": reg.device_id, "created": reg.created, "was_quarantined": reg.was_quarantined}

    async def import_devices(self, text: str, fmt: Format, progress: Progress | None = None) -> ImportReport:
        return await import_devices(self.pool, self.fleet, text, fmt, progress=progress, layers=self.layers)

    def on_platform_offline(self, device_id: str, at_ms: int) -> bool:
        """An NB-IoT platform says the device went offline at `at_ms`; False when it is not
        registered. Unless the device was heard after that moment, the next offline sweep (every
        `sweep_interval_s`) declares it offline since `at_ms` and raises its offline alarm, instead
        of waiting 2.5 heartbeat intervals (a day and more for NB-IoT detectors)."""
        fleet = self.fleet
        slot = fleet.slot(device_id)
        if slot < 0:
            return False
        at = min(at_ms, self.clock())
        watched = fleet.parent[slot] < 0 and not int(fleet.flags[slot]) & OFFLINE
        if watched and fleet.last_seen_ms[slot] <= at:
            fleet.offline_at_ms[slot] = min(int(fleet.offline_at_ms[slot]), at)
        return True

    async def on_command_result(self, device_id: str, cmd_id: str | None, state: PlatformState, detail: str) -> bool:
        """A platform's word on a command (`CommandService.on_platform_result`)."""
        return await self.commands.on_platform_result(device_id, cmd_id, state, detail)


async def save_flapping_cleared(pool: asyncpg.Pool, device_id: str, actor: str, note: str | None) -> None:
    """An operator lifted a detector's flapping mark: audit it (`device_audit`) and clear the flag
    in the saved live state (`device_state`), in one transaction."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO device_audit (device_id, action, actor, detail) "
            "VALUES ($1, 'flapping_cleared', $2, $3::jsonb)",
            device_id, actor, json.dumps({"note": note}, ensure_ascii=False),
        )
        await conn.execute(
            "UPDATE device_state SET flags = flags & ~$2::integer, updated_at = now() WHERE device_id = $1",
            device_id, FLAPPING,
        )

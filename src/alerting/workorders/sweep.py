"""The supervision sweep: one pass ends expired maintenance, marks orders overdue (telling
people), verifies fixed orders whose devices report healthy, and, every `open_every_s`, opens
orders for the conditions of `conditions`. Runs in the process holding the complete fleet."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import asyncpg
import numpy as np

from alerting.workorders import store
from alerting.workorders.conditions import (
    FALSE_ALARM_WINDOW,
    FALSE_ALARMS,
    FAULT_AFTER,
    DeviceFacts,
    History,
    candidates,
    healthy,
)
from alerting.workorders.model import default_due
from devices import maintenance, shielded
from devices.clock import Clock
from devices.db_errors import UNAVAILABLE
from devices.fleet import FLAPPING, LOW_BATTERY, OFFLINE, QUARANTINED, TAMPER, Fleet
from devices.fleet_query import live_flags

log = logging.getLogger(__name__)

_FAULTS = """
SELECT d AS device_id, min(a.first_seen) AS since
  FROM alarms a, unnest(a.device_ids) d
 WHERE a.type IN ('device_fault', 'panel_fault') AND a.status IN ('active_unack', 'active_ack') AND a.first_seen <= $1
 GROUP BY d"""
_FALSE_ALARMS = """
SELECT d AS device_id, count(*) AS n
  FROM alarms a, unnest(a.device_ids) d
 WHERE a.classification = 'false_alarm' AND a.status = 'resolved' AND coalesce(a.resolved_at, a.last_seen) >= $1
 GROUP BY d HAVING count(*) >= $2"""


@dataclass
class Sweep:
    """The supervision sweep over `pool` and the complete `fleet` at `clock`'s time."""

    pool: asyncpg.Pool
    fleet: Fleet
    clock: Clock
    tz: ZoneInfo
    interval_s: float = 60.0
    open_every_s: float = 300.0
    _opened_at: datetime | None = field(default=None, init=False)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock() / 1000, UTC)

    async def run(self) -> None:
        """Sweep every `interval_s`; a database outage or error is logged and tried again next time."""
        while True:
            try:
                await self.once()
            except (*UNAVAILABLE, asyncpg.PostgresError) as e:
                log.error("supervision sweep failed (%s); retrying in %.0f s", e, self.interval_s)
            await asyncio.sleep(self.interval_s)

    async def once(self) -> dict[str, list[int] | list[str]]:
        """One pass; answers what it did (for tests and logs)."""
        now = self.now()
        ended = await maintenance.expire(self.pool, now)
        for device_id in ended.device_ids:
            if (slot := self.fleet.slot(device_id)) >= 0:
                self.fleet.set_maintenance(slot, False)
        for unit_id in ended.unit_ids:
            self.fleet.set_unit_maintenance(unit_id, False)
        overdue = await store.mark_overdue(self.pool, now.astimezone(self.tz).date(), now)
        shields = await self._shielded()
        verified = await self._verify(now, shields)
        opened: list[int] = []
        if self._opened_at is None or (now - self._opened_at).total_seconds() >= self.open_every_s:
            opened = await self.open_due(now, shields)
            self._opened_at = now
        return {"maintenance_devices": list(ended.device_ids), "maintenance_units": list(ended.unit_ids),
                "overdue": overdue, "verified": verified, "opened": opened}

    def facts(self, device_ids: set[str] | None = None) -> dict[str, DeviceFacts]:
        """Facts of `device_ids` (unknown ones left out), or of every registered device whose
        flags may open an order when None."""
        f = self.fleet
        if device_ids is None:
            flags = live_flags(f, slice(0, f.size))
            slots = np.flatnonzero(flags & (OFFLINE | LOW_BATTERY | TAMPER | FLAPPING) & ~np.uint16(QUARANTINED))
        else:
            slots = np.array([s for s in map(f.slot, device_ids) if s >= 0], np.int64)
            flags = np.zeros(f.size, np.uint16)
            if slots.size:
                flags[slots] = live_flags(f, slots)

        def at(ms: int) -> datetime | None:
            return datetime.fromtimestamp(ms / 1000, UTC) if ms > 0 else None

        out = {}
        for s in map(int, slots):
            unit = int(f.unit[s])
            out[f.device_ids[s]] = DeviceFacts(
                f.device_ids[s], f.units.names[unit] if unit >= 0 else None, int(flags[s]),
                at(int(f.offline_since_ms[s])), at(int(f.last_seen_ms[s])))
        return out

    async def _shielded(self) -> dict[str, tuple[datetime, str]]:
        """Each transmission device's longest-shielded point now: (since, point)."""
        out: dict[str, tuple[datetime, str]] = {}
        for r in await shielded.every_open_point(self.pool):
            if r["device_id"] not in out or r["since"] < out[r["device_id"]][0]:
                out[r["device_id"]] = (r["since"], r["component"])
        return out

    async def open_due(self, now: datetime, shields: dict[str, tuple[datetime, str]]) -> list[int]:
        """Open an order for every condition that holds and has no live order of its (device, kind)."""
        faults = {r["device_id"]: r["since"] for r in await self.pool.fetch(_FAULTS, now - FAULT_AFTER)}
        false_alarms = {r["device_id"]: r["n"] for r in
                        await self.pool.fetch(_FALSE_ALARMS, now - FALSE_ALARM_WINDOW, FALSE_ALARMS)}
        devices = self.facts()
        devices |= self.facts((set(faults) | set(false_alarms) | set(shields)) - set(devices))
        devices = {d: v for d, v in devices.items() if not self._quarantined(d)}
        live = await store.live_pairs(self.pool)
        due = default_due(now, self.tz)
        opened = []
        for c in candidates(sorted(devices.values(), key=lambda d: d.device_id),
                            History(faults, false_alarms, shields), now):
            if (c.device_id, c.kind) in live:
                continue
            try:
                opened.append(await store.open_order(
                    self.pool, store.NewOrder(c.kind, c.unit_id, [c.device_id], c.reason, due), "system", now))
            except store.LiveOrderExists:  # opened by hand meanwhile
                continue
        return opened

    def _quarantined(self, device_id: str) -> bool:
        slot = self.fleet.slot(device_id)
        return slot < 0 or bool(self.fleet.flags[slot] & QUARANTINED)

    async def _verify(self, now: datetime, shields: dict[str, tuple[datetime, str]]) -> list[int]:
        orders = await store.fixed(self.pool)
        facts = self.facts({d for o in orders for d in o["device_ids"]})
        done = []
        for o in orders:
            if o["fixed_at"] is not None and all(
                healthy(o["kind"], facts.get(d), d in shields, o["fixed_at"]) for d in o["device_ids"]
            ) and await store.verify(self.pool, o["work_order_id"], now):
                done.append(o["work_order_id"])
        return done

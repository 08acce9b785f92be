"""The alarm service: correlation, fleet state and the lifecycle composed for the pipeline.

`on_batch` is the pipeline's batch handler: the correlation core sees a batch against the fleet
state before the batch is applied, then the fleet applies it, then the lifecycle writes the
decisions (and the clears of offline alarms of devices heard again). `run` drives the offline
sweep, the escalation timers, the notification worker and (given `listen_dsn`) the LISTEN
connection that brings other processes' alarm events to this hub, in one TaskGroup.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import asyncpg
import numpy as np
from prometheus_client import CollectorRegistry

from alerting.lifecycle import AlarmLifecycle
from alerting.listen import follow
from alerting.metrics import AlarmMetrics
from alerting.model import Decision
from alerting.response.messages import Language
from alerting.response.notifier import Notifier
from alerting.stream import AlarmHub, db_replay
from alerting.writer import DecisionWriter
from devices.batch import ReadingColumns
from devices.clock import Clock
from devices.db_errors import UNAVAILABLE
from devices.fleet import FLAPPING, Fleet
from devices.outbound import OutboundPolicy
from devices.reading import Reading
from devices.service import save_flapping_cleared

log = logging.getLogger(__name__)

#: Non-numeric metrics worth keeping in an alarm's evidence (the columns hold numbers only).
EVIDENCE_METRICS = ("fault_code", "gas_type", "valve", "breaker", "mains_ok", "cell_id")


class CorrelationCore(Protocol):
    """What the service needs of `alerting.core.Correlator`."""

    def evaluate(self, batch: ReadingColumns, fleet: Fleet, now_ms: int) -> list[Decision]: ...

    def sweep(self, offline_slots: np.ndarray, fleet: Fleet, now_ms: int) -> list[Decision]: ...

    def came_online(self, slots: np.ndarray, fleet: Fleet, now_ms: int) -> list[Decision]: ...

    def clear_flapping(self, slot: int, fleet: Fleet) -> None: ...


class UnknownDevice(Exception):
    def __init__(self, device_id: str) -> None:
        super().__init__(f"unknown device {device_id}")
        self.device_id = device_id


def enrich(decisions: list[Decision], readings: list[Reading]) -> None:
    """Add what the numeric columns cannot carry (fault codes, gas type, valve, cell, the device's
    alarm code, the device clock's skew) to the evidence entries that name a reading of this batch
    (by `device_id` and `ts_ms`); drop the core's batch row index, which means nothing once stored."""
    by_reading = {(r.detector_id, r.ts_ms): r for r in readings}
    for d in decisions:
        for entry in d.evidence:
            entry.pop("row", None)
            r = by_reading.get((entry.get("device_id"), entry.get("ts_ms")))  # type: ignore[arg-type]
            if r is None:
                continue
            for name in EVIDENCE_METRICS:
                if name in r.metrics and name not in entry:
                    entry[name] = r.metrics[name]
            for name in ("alarm_code", "clock_skew"):  # clock_skew: the device's clock was ahead (ingest.clock_skew)
                if name in r.extra:
                    entry.setdefault(name, r.extra[name])
            if r.seq is not None:
                entry.setdefault("seq", r.seq)


def received_times(decisions: list[Decision], readings: list[Reading]) -> list[int | None]:
    """For each decision, when the newest reading of its devices in this batch was received."""
    newest: dict[str, int] = {}
    for r in readings:
        if r.received_ms > newest.get(r.detector_id, -1):
            newest[r.detector_id] = r.received_ms
    return [max((newest[i] for i in d.device_ids if i in newest), default=None) for d in decisions]


class AlarmService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        fleet: Fleet,
        correlator: CorrelationCore,
        lifecycle: AlarmLifecycle,
        hub: AlarmHub,
        clock: Clock,
        sweep_interval_s: float = 5.0,
        *,
        tick_interval_s: float = 1.0,
        notifier: Notifier | None = None,
        listen_dsn: str | None = None,
    ) -> None:
        if not 0 < sweep_interval_s <= 10:
            raise ValueError(
                "sweep_interval_s must be in (0, 10]: offline devices are found by a sweep at least every 10 s"
            )
        self.pool = pool
        self.fleet = fleet
        self.correlator = correlator
        self.lifecycle = lifecycle
        self.hub = hub
        self.clock = clock
        self.sweep_interval_s = sweep_interval_s
        self.tick_interval_s = tick_interval_s
        self.notifier = notifier
        self.listen_dsn = listen_dsn
        self.writer = DecisionWriter(lifecycle)
        #: told the device_id of every flapping mark an operator cleared (scale-out: to the workers)
        self.on_flapping_cleared: Callable[[str], None] | None = None

    @classmethod
    def create(
        cls,
        *,
        pool: asyncpg.Pool,
        fleet: Fleet,
        correlator: CorrelationCore,
        clock: Clock,
        registry: CollectorRegistry,
        sweep_interval_s: float = 5.0,
        stream_heartbeat_s: float = 15.0,
        listen_dsn: str | None = None,
        outbound: OutboundPolicy | None = None,
        public_url: str | None = None,
        language: Language = "zh",
        device_tz: str = "Asia/Shanghai",
        **lifecycle_options: Any,
    ) -> AlarmService:
        """The service with its hub (replaying from `alarm_events` and, given `listen_dsn`,
        following the events other processes commit), notifier (sending where `outbound`
        allows; global addresses only by default) and metrics."""
        metrics = AlarmMetrics(registry)
        hub = AlarmHub(db_replay(pool), heartbeat_s=stream_heartbeat_s, metrics=metrics)
        notifier = Notifier(pool, clock, policy=outbound, metrics=metrics, public_url=public_url, language=language,
                            device_tz=device_tz)
        lifecycle = AlarmLifecycle(pool, hub, fleet, clock, notifier=notifier, metrics=metrics, device_tz=device_tz,
                                   **lifecycle_options)
        return cls(
            pool, fleet, correlator, lifecycle, hub, clock, sweep_interval_s, notifier=notifier, listen_dsn=listen_dsn
        )

    async def on_batch(self, readings: list[Reading], columns: ReadingColumns) -> asyncio.Future[None] | None:
        """The pipeline's batch handler: correlate and apply now, queue the decisions for the
        writer; the answer (None when nothing was decided) resolves once they are committed."""
        now = self.clock()
        decisions = self.correlator.evaluate(columns, self.fleet, now)
        applied = self.fleet.apply(columns)
        if len(applied.came_online):
            decisions += self.correlator.came_online(applied.came_online, self.fleet, now)
        if not decisions:
            return None
        enrich(decisions, readings)
        return await self.writer.submit(decisions, received_times(decisions, readings))

    async def sweep(self, now_ms: int) -> None:
        """Find devices gone silent and raise their offline (or network outage) alarms."""
        slots = self.fleet.sweep(now_ms)
        decisions = self.correlator.sweep(slots, self.fleet, now_ms)
        if decisions:
            await self.lifecycle.handle(decisions)

    async def clear_flapping(self, device_id: str, actor: str, note: str | None = None) -> bool:
        """Lift a detector's flapping mark (CONTRACT §8); answer whether it was marked. The audit
        row and the checkpointed flag are written first (`devices.service.save_flapping_cleared`),
        so the cleared mark survives a restart; raises UnknownDevice."""
        slot = self.fleet.slot(device_id)
        if slot < 0:
            raise UnknownDevice(device_id)
        if not int(self.fleet.flags[slot]) & FLAPPING:
            return False
        await save_flapping_cleared(self.pool, device_id, actor, note)
        self.correlator.clear_flapping(slot, self.fleet)
        if self.on_flapping_cleared is not None:
            self.on_flapping_cleared(device_id)
        return True

    async def clear_flooding(self, device_id: str, actor: str, note: str | None = None) -> bool:
        """Lift a detector's flooding mark (docs/escalation.md); answer whether it was marked.
        Audited in `device_audit`, saved before the live flag changes; raises UnknownDevice."""
        slot = self.fleet.slot(device_id)
        if slot < 0:
            raise UnknownDevice(device_id)
        return await self.lifecycle.clear_flooding(slot, actor, note)

    async def run(self) -> None:
        """The decision writer, the repeat flush, the sweep loop, the timer loop, the notification
        worker and the event listener, until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.writer.run())
            tg.create_task(self._flush_repeats())
            tg.create_task(self._every(self.sweep_interval_s, self.sweep, "offline sweep"))
            tg.create_task(self._every(self.tick_interval_s, self.lifecycle.tick, "alarm timers"))
            if self.notifier is not None:
                tg.create_task(self.notifier.run())
            if self.listen_dsn is not None:
                tg.create_task(follow(self.hub, self.listen_dsn))

    async def _flush_repeats(self) -> None:
        """Write coalesced alarm repeats every `repeat_flush_s`, and once more when stopped (after
        the pipeline drained), so that a clean stop loses no count."""
        try:
            await self._every(self.lifecycle.repeat_flush_s, self.lifecycle.flush, "alarm repeat flush")
        except asyncio.CancelledError:
            try:
                await asyncio.wait_for(self.lifecycle.flush(self.clock()), 5)
            except (Exception, asyncio.CancelledError) as e:
                log.warning("last alarm repeats not written: %r", e)
            raise

    async def _every(self, interval_s: float, job: Callable[[int], Awaitable[None]], name: str) -> None:
        failing = False
        while True:
            try:
                await job(self.clock())
                if failing:
                    log.info("%s recovered", name)
                failing = False
            except UNAVAILABLE as e:
                if not failing:
                    log.error("%s failed: database unavailable (%s); retrying", name, e)
                failing = True
            except asyncpg.PostgresError:
                log.exception("%s failed; retrying", name)
            await asyncio.sleep(interval_s)

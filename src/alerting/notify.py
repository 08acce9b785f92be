"""Escalation notifications: a JSON webhook POST to each contact of an alarm's region and level.

`enqueue` never waits (the lifecycle calls it after a commit, the tick must not block); a
worker delivers jobs concurrently (bounded), retrying a failed delivery with exponential
backoff, and records every attempt in `notification_attempts`. Contacts are the rows of
`region_contacts` whose region is a prefix of the alarm's region ('' matches every region).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from alerting.lifecycle import LEVEL_NAMES, Clock, to_dt
from alerting.metrics import AlarmMetrics

log = logging.getLogger(__name__)

#: HTTP answers worth another attempt; any other 4xx will not get better by retrying.
RETRY_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class Job:
    alarm: dict[str, Any]
    level: int


class Notifier:
    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Clock,
        *,
        attempts: int = 3,
        backoff_s: float = 1.0,
        timeout_s: float = 5.0,
        queue_max: int = 10_000,
        concurrency: int = 16,
        metrics: AlarmMetrics | None = None,
    ) -> None:
        self.pool = pool
        self.clock = clock
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.metrics = metrics
        self.queue: asyncio.Queue[Job] = asyncio.Queue(queue_max)
        self._slots = asyncio.Semaphore(concurrency)
        self._unreached: set[tuple[str, int]] = set()

    def enqueue(self, alarm: dict[str, Any], level: int) -> None:
        """Queue the notification of `level` for an alarm; when the queue is full it is dropped and counted."""
        try:
            self.queue.put_nowait(Job(alarm, level))
        except asyncio.QueueFull:
            log.error("notification queue full: level %d of alarm %s not sent", level, alarm["alarm_id"])
            if self.metrics:
                self.metrics.notify_dropped.inc()
        if self.metrics:
            self.metrics.notify_queue.set(self.queue.qsize())

    async def run(self) -> None:
        """Deliver queued jobs until cancelled."""
        headers = {"User-Agent": "miaoxiang-notifier/1"}
        async with httpx.AsyncClient(timeout=self.timeout_s, headers=headers) as http, asyncio.TaskGroup() as tg:
            while True:
                job = await self.queue.get()
                if self.metrics:
                    self.metrics.notify_queue.set(self.queue.qsize())
                await self._slots.acquire()
                tg.create_task(self._deliver(http, job))

    async def contacts(self, region: str, level: int) -> list[tuple[str, str]]:
        rows = await self.pool.fetch(
            "SELECT name, webhook FROM region_contacts WHERE level = $2 AND starts_with($1, region) ORDER BY region, name",
            region, level,
        )
        return [(r["name"], r["webhook"]) for r in rows]

    async def _deliver(self, http: httpx.AsyncClient, job: Job) -> None:
        try:
            contacts = await self.contacts(job.alarm["region"] or "", job.level)
            if not contacts and (job.alarm["region"], job.level) not in self._unreached:
                self._unreached.add((job.alarm["region"], job.level))
                log.warning("no level %d contact configured for region %r (said once per region and level)",
                            job.level, job.alarm["region"])
            async with asyncio.TaskGroup() as tg:
                for name, url in contacts:
                    tg.create_task(self._post(http, job, name, url))
        except Exception:  # one failed job must not stop the worker
            log.exception("notification of alarm %s level %d failed", job.alarm["alarm_id"], job.level)
        finally:
            self._slots.release()

    async def _post(self, http: httpx.AsyncClient, job: Job, name: str, url: str) -> None:
        payload = {"alarm": job.alarm, "level": job.level, "level_name": LEVEL_NAMES[job.level], "contact": name}
        for attempt in range(1, self.attempts + 1):
            try:
                resp = await http.post(url, json=payload)
                ok = resp.is_success
                retry = not ok and (resp.status_code >= 500 or resp.status_code in RETRY_STATUSES)
                detail = f"HTTP {resp.status_code}"
            except httpx.HTTPError as e:
                ok, retry, detail = False, True, f"{type(e).__name__}: {e}"
            await self._record(job, url, attempt, ok, f"{name}: {detail}")
            if ok or not retry or attempt == self.attempts:
                return
            await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))

    async def _record(self, job: Job, target: str, attempt: int, ok: bool, detail: str) -> None:
        if self.metrics:
            self.metrics.notify_attempts.labels(str(ok).lower()).inc()
        try:
            await self.pool.execute(
                """INSERT INTO notification_attempts (alarm_id, level, target, attempt, at, ok, detail)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)""",
                int(job.alarm["alarm_id"]), job.level, target, attempt, to_dt(self.clock()), ok, detail,
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            log.error("could not record notification attempt %d to %s for alarm %s: %s", attempt, target, job.alarm["alarm_id"], e)

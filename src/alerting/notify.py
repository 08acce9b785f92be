"""Escalation notifications: a JSON webhook POST to each contact of an alarm's region and level.

The lifecycle writes one `notification_outbox` row per (alarm change reaching a level, contact)
in the transaction of the change (contacts: `mx_escalation_contacts`, see docs/escalation.md)
and then calls `wake`. The worker claims due rows with `FOR UPDATE SKIP LOCKED` (so several
processes share one outbox), leasing each for longer than a request can take, and delivers them
concurrently (bounded). Every attempt is recorded in `notification_attempts`; a failure worth
retrying (connection error, 5xx, 408/425/429) is due again after an exponential backoff, until
`attempts` are spent. A row whose worker died mid-delivery is due again when its lease ends, so a
notification is delivered at least once: receivers dedupe on `notification_id`.

Outbound policy (CONTRACT §9, `devices.outbound`): every attempt resolves the target's host
afresh, keeps the addresses the policy allows and connects to those only (no keep-alive, no
proxies from the environment, redirects not followed), so a name that has come to resolve to an
internal address is refused at send time. An attempt records only its class (`ERROR_CLASSES`),
never a socket's error text: an operator must not learn from it which internal ports are open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from alerting.lifecycle import DB_DOWN, LEVEL_NAMES, Clock, loads, to_dt
from alerting.metrics import AlarmMetrics
from alerting.response.http import ERROR_CLASSES, RETRY_STATUSES, error_class, outbound_client, status_class
from devices.outbound import NOT_ALLOWED, OutboundPolicy, OutboundRefused, Resolver, check_url, system_resolver

log = logging.getLogger(__name__)

_CLAIM = """
UPDATE notification_outbox o SET attempts = o.attempts + 1, next_at = clock_timestamp() + make_interval(secs => $2)
FROM (SELECT id FROM notification_outbox WHERE state = 'pending' AND next_at <= clock_timestamp()
      ORDER BY next_at, id LIMIT $1 FOR UPDATE SKIP LOCKED) due
WHERE o.id = due.id
RETURNING o.id, o.alarm_id, o.level, o.contact, o.target, o.attempts,
          (SELECT snapshot FROM alarm_events e WHERE e.event_id = o.event_id) AS snapshot
"""
_DONE = "UPDATE notification_outbox SET state = $2, done_at = clock_timestamp() WHERE id = $1"
_RETRY = "UPDATE notification_outbox SET next_at = clock_timestamp() + make_interval(secs => $2) WHERE id = $1"
_RELEASE = """UPDATE notification_outbox SET next_at = clock_timestamp(), attempts = attempts - 1
              WHERE id = $1 AND state = 'pending'"""
_RECORD = """INSERT INTO notification_attempts (alarm_id, level, target, attempt, at, ok, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7)"""


@dataclass(frozen=True, slots=True)
class Job:
    """One claimed outbox row; `attempt` counts this one."""

    id: int
    alarm_id: int
    level: int
    contact: str
    target: str
    attempt: int
    alarm: dict[str, Any]

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> Job:
        return cls(r["id"], r["alarm_id"], r["level"], r["contact"], r["target"], r["attempts"], loads(r["snapshot"]))

    def payload(self) -> dict[str, Any]:
        return {"notification_id": str(self.id), "alarm": self.alarm, "level": self.level,
                "level_name": LEVEL_NAMES[self.level], "contact": self.contact}


def shown_detail(ok: bool, detail: str) -> str:
    """An attempt's recorded `detail` as the API shows it: its class. Attempts recorded before
    classes were (`<contact>: HTTP 503`, `<contact>: ConnectError: ...`) show the class their
    text implies, never the text."""
    if detail in ERROR_CLASSES or ok:
        return detail if detail in ERROR_CLASSES else "http 2xx"
    code = detail.rpartition("HTTP ")[2]
    if code.isdigit():
        return status_class(int(code))
    return "timeout" if "Timeout" in detail else "refused"


class Notifier:
    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Clock,
        *,
        policy: OutboundPolicy | None = None,
        resolve: Resolver = system_resolver,
        attempts: int = 5,
        backoff_s: float = 1.0,
        backoff_max_s: float = 300.0,
        timeout_s: float = 5.0,
        poll_s: float = 1.0,
        concurrency: int = 16,
        metrics: AlarmMetrics | None = None,
    ) -> None:
        self.pool = pool
        self.clock = clock
        self.policy = policy if policy is not None else OutboundPolicy()
        self.resolve = resolve
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.concurrency = concurrency
        self.lease_s = timeout_s + 10.0
        self.metrics = metrics
        self._wake = asyncio.Event()
        self._busy = 0

    def wake(self) -> None:
        """New rows are in the outbox: look now instead of at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver due outbox rows until cancelled."""
        headers = {"User-Agent": "miaoxiang-notifier/1"}
        http = outbound_client(self.policy, timeout_s=self.timeout_s, headers=headers, resolve=self.resolve)
        async with http, asyncio.TaskGroup() as tg:
            while True:
                self._wake.clear()
                jobs: list[Job] = []
                free = self.concurrency - self._busy
                if free > 0:
                    try:
                        jobs = await self._claim(free)
                    except (*DB_DOWN, asyncpg.PostgresError) as e:
                        log.error("cannot read the notification outbox (%s); retrying", e)
                for job in jobs:
                    self._busy += 1
                    tg.create_task(self._deliver(http, job))
                if len(jobs) < free or free <= 0:  # nothing more due now (or no free slot)
                    try:
                        async with asyncio.timeout(self.poll_s):
                            await self._wake.wait()
                    except TimeoutError:
                        pass

    async def _claim(self, limit: int) -> list[Job]:
        rows = await self.pool.fetch(_CLAIM, limit, self.lease_s)
        if self.metrics:
            self.metrics.notify_pending.set(
                await self.pool.fetchval("SELECT count(*) FROM notification_outbox WHERE state = 'pending'"))
        return [Job.from_record(r) for r in rows]

    async def _deliver(self, http: httpx.AsyncClient, job: Job) -> None:
        try:
            ok, retry, detail = await self._post(http, job)
            await self._record(job, ok, retry and job.attempt < self.attempts, detail)
        except asyncio.CancelledError:
            await self._release(job)
            raise
        except Exception:  # one failed job must not stop the worker; its lease makes it due again
            log.exception("notification %d of alarm %d (level %d) failed", job.id, job.alarm_id, job.level)
        finally:
            self._busy -= 1
            self._wake.set()

    async def _post(self, http: httpx.AsyncClient, job: Job) -> tuple[bool, bool, str]:
        """One attempt: (delivered, worth retrying, its class). A target the policy refuses is
        final; so is one whose name does not resolve only until the next attempt (retried)."""
        try:
            check_url(job.target, self.policy)
            resp = await http.post(job.target, json=job.payload())
        except OutboundRefused as e:
            log.warning("notification %d of alarm %d not sent: %s", job.id, job.alarm_id, e)
            return False, False, NOT_ALLOWED
        except httpx.HTTPError as e:
            log.info("notification %d of alarm %d to %s failed: %s", job.id, job.alarm_id, job.contact, e)
            return False, True, error_class(e)
        retry = not resp.is_success and (resp.status_code >= 500 or resp.status_code in RETRY_STATUSES)
        return resp.is_success, retry, status_class(resp.status_code)

    async def _release(self, job: Job) -> None:
        """Give a claimed row back at once, its attempt uncounted (shutting down mid-delivery)."""
        with contextlib.suppress(*DB_DOWN, asyncpg.PostgresError):
            async with asyncio.timeout(2):
                await self.pool.execute(_RELEASE, job.id)

    async def _record(self, job: Job, ok: bool, again: bool, detail: str) -> None:
        """The attempt and what becomes of the row, in one transaction."""
        if self.metrics:
            self.metrics.notify_attempts.labels(str(ok).lower()).inc()
            if not ok and not again:
                self.metrics.notify_failed.inc()
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_RECORD, job.alarm_id, job.level, job.target, job.attempt, to_dt(self.clock()), ok, detail)
            if again:
                delay = min(self.backoff_s * 2 ** (job.attempt - 1), self.backoff_max_s)
                await conn.execute(_RETRY, job.id, delay)
            else:
                await conn.execute(_DONE, job.id, "delivered" if ok else "failed")

"""The work-order notice sender (CONTRACT §11): tells the people `work_order_notices` names.

The sweep (overdue) and the routes (assigned) write the rows; this worker claims queued ones with
`FOR UPDATE SKIP LOCKED` and a lease (several processes may run it; a row whose worker died is
due again when its lease ends) and sends each through its responder's channels in order, with
the response loop's adapters under the outbound policy (`notifier.send_through`), until one
succeeds. An attempt whose `SendResult.retry` is set makes the row due again after an exponential
backoff, until `attempts` rounds are spent; every attempt is a `work_order_sends` row; the row
ends `sent` (`sent_at`), `failed` with its error class, or `skipped` when the order was closed (or
re-assigned, for an `assigned` notice) before it went out. One message per notice: a group robot
listed by several people told about one order gets one message for each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from alerting.response.channels.base import Recipient, SendResult
from alerting.response.channels.registry import build_channel
from alerting.response.http import Outbound
from alerting.response.messages import Language
from alerting.response.notifier import (
    ChannelBuilder,
    backoff_delay,
    channels_named,
    lease_s,
    place,
    send_through,
)
from alerting.workorders.model import CLOSED, is_overdue
from alerting.workorders.notice_text import OrderText, compose
from devices.clock import Clock
from devices.db_errors import UNAVAILABLE
from devices.outbound import OutboundPolicy, Resolver, system_resolver

log = logging.getLogger(__name__)

_CLAIM = """
UPDATE work_order_notices n SET next_at = clock_timestamp() + make_interval(secs => $2)
FROM (SELECT id FROM work_order_notices WHERE state = 'queued' AND next_at <= clock_timestamp()
      ORDER BY next_at, id LIMIT $1 FOR UPDATE SKIP LOCKED) due
WHERE n.id = due.id
RETURNING n.id, n.work_order_id, n.responder_id, n.reason, n.attempts
"""
_ORDER = """
SELECT w.work_order_id, w.kind, w.state, w.reason, w.due, w.unit_id, w.assignee, w.device_ids,
       u.name AS unit_name, u.address
  FROM work_orders w LEFT JOIN units u ON u.unit_id = w.unit_id
 WHERE w.work_order_id = $1
"""
_LOCATIONS = """SELECT device_id, location::text AS location FROM devices
                 WHERE device_id = ANY($1::text[]) AND location IS NOT NULL"""
_RESPONDER = "SELECT name, phone, email, channels, deleted_at FROM responders WHERE responder_id = $1"
_SEND = """INSERT INTO work_order_sends (notice_id, channel, attempt, ok, error_class, provider_code)
           VALUES ($1, $2, $3, $4, $5, $6)"""
_FINISH = """UPDATE work_order_notices SET state = $2, channel = $3, error_class = $4, provider_code = $5,
                    attempts = attempts + 1, sent_at = CASE WHEN $2 = 'sent' THEN clock_timestamp() END,
                    done_at = clock_timestamp()
              WHERE id = $1"""
_RETRY = """UPDATE work_order_notices SET attempts = attempts + 1, channel = $2, error_class = $3,
                   provider_code = $4, next_at = clock_timestamp() + make_interval(secs => $5)
             WHERE id = $1"""
_END = "UPDATE work_order_notices SET state = $2, error_class = $3, done_at = clock_timestamp() WHERE id = $1"
_RELEASE = "UPDATE work_order_notices SET next_at = clock_timestamp() WHERE id = ANY($1::bigint[]) AND state = 'queued'"


class NoticeSender:
    """Sends queued work-order notices until cancelled (`run`)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Clock,
        *,
        policy: OutboundPolicy | None = None,
        resolve: Resolver = system_resolver,
        build: ChannelBuilder = build_channel,
        language: Language = "zh",
        device_tz: str = "Asia/Shanghai",
        attempts: int = 5,
        backoff_s: float = 1.0,
        backoff_max_s: float = 300.0,
        timeout_s: float = 5.0,
        poll_s: float = 2.0,
        batch: int = 20,
    ) -> None:
        self.pool = pool
        self.clock = clock
        self.policy = policy if policy is not None else OutboundPolicy()
        self.resolve = resolve
        self.build = build
        self.language = language
        self.tz = ZoneInfo(device_tz)
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.batch = batch
        self.lease_s = lease_s(timeout_s)

    async def run(self) -> None:
        """Claim and send due notices every `poll_s` (at once again after a full batch)."""
        async with Outbound(self.policy, self.timeout_s, self.resolve) as http:
            while True:
                rows: list[asyncpg.Record] = []
                try:
                    rows = await self.pool.fetch(_CLAIM, self.batch, self.lease_s)
                except (*UNAVAILABLE, asyncpg.PostgresError) as e:
                    log.error("cannot read the work-order notices (%s); retrying", e)
                try:
                    await asyncio.gather(*(self._serve(http, r) for r in rows))
                except asyncio.CancelledError:
                    with contextlib.suppress(*UNAVAILABLE, asyncpg.PostgresError):
                        await self.pool.execute(_RELEASE, [r["id"] for r in rows])
                    raise
                if len(rows) < self.batch:
                    await asyncio.sleep(self.poll_s)

    async def _serve(self, http: Outbound, row: asyncpg.Record) -> None:
        try:
            await self._send(http, row)
        except (*UNAVAILABLE, asyncpg.PostgresError) as e:  # the lease makes the row due again
            log.error("work-order notice %s not sent (%s); retrying after its lease", row["id"], e)
        except Exception:
            log.exception("work-order notice %s failed; retrying after its lease", row["id"])

    async def _order(self, order_id: int) -> OrderText | None:
        o = await self.pool.fetchrow(_ORDER, order_id)
        if o is None:
            return None
        places = {r["device_id"]: place(r["location"])
                  for r in await self.pool.fetch(_LOCATIONS, o["device_ids"])}
        now = datetime.fromtimestamp(self.clock() / 1000, UTC)
        return OrderText(
            work_order_id=o["work_order_id"], kind=o["kind"], state=o["state"], reason=o["reason"], due=o["due"],
            overdue=is_overdue(o["due"], o["state"], now, self.tz), unit_id=o["unit_id"], unit_name=o["unit_name"],
            address=o["address"], assignee=o["assignee"],
            devices=tuple((d, places.get(d)) for d in o["device_ids"]))

    async def _send(self, http: Outbound, row: asyncpg.Record) -> None:
        """One notice through its responder's channels in order; recorded."""
        nid = row["id"]
        order = await self._order(row["work_order_id"])
        if order is None or order.state in CLOSED:
            await self.pool.execute(_END, nid, "skipped", "order closed")
            return
        if row["reason"] == "assigned" and order.assignee != row["responder_id"]:
            await self.pool.execute(_END, nid, "skipped", "reassigned")
            return
        responder = await self.pool.fetchrow(_RESPONDER, row["responder_id"])
        if responder is None or responder["deleted_at"] is not None:
            await self.pool.execute(_END, nid, "failed", "responder deleted")
            return
        stored = await channels_named(self.pool, responder["channels"])
        channels = [stored[n] for n in responder["channels"] if n in stored]
        if not channels:
            await self.pool.execute(_END, nid, "failed", "no channel")
            return
        message = compose(order, row["reason"], self.language, notice_id=nid)
        recipient = Recipient(responder["name"], responder["phone"], responder["email"])
        attempt = row["attempts"] + 1
        sends: list[tuple[Any, ...]] = []
        retry = False
        last = SendResult(False, "no channel")
        for ch in channels:
            last = await send_through(self.build, http, ch, message, recipient)
            sends.append((nid, ch["name"], attempt, last.ok, last.error_class, last.provider_code))
            if last.ok:
                break
            retry = retry or last.retry
        used = sends[-1][1]
        async with self.pool.acquire() as conn, conn.transaction():  # the attempts and their outcome together
            await conn.executemany(_SEND, sends)
            if last.ok:
                await conn.execute(_FINISH, nid, "sent", used, None, None)
            elif retry and attempt < self.attempts:
                delay = backoff_delay(attempt, self.backoff_s, self.backoff_max_s)
                await conn.execute(_RETRY, nid, used, last.error_class, last.provider_code, delay)
            else:
                await conn.execute(_FINISH, nid, "failed", used, last.error_class, last.provider_code)

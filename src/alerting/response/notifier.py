"""The notifier: sends the `notifications` the lifecycle queues (CONTRACT §9).

A worker claims per recipient: the recipients with due rows, the longest waiting first, each with
all its due rows, locked with `FOR UPDATE SKIP LOCKED` and leased (several processes share the
table; a row whose worker died is due again when its lease ends), so one digest carries every
alarm held for a recipient. One message to a recipient at a time, at most `concurrency`
recipients at once in this process; a recipient it holds is not claimed again before its hold
ends unless an immediate row (or a digest's retry) comes in:

- A responder's row goes to the first of its channels that succeeds. When the first usable one
  is a group robot, the row rides on that robot's row for (alarm, level, reason): one message per
  (alarm, level) however many responders list the robot; if the robot finally fails, the row
  falls back to the responder's next channel.
- Digests: a recipient sent a message less than `digest_s` (10 s) ago gets further non-immediate
  alarms gathered into one digest sent `digest_s` after that message (`plan`); `immediate` ones
  are never held. A group robot gets at most `group_per_min` (20) messages a minute; the excess
  waits and joins the next digest.
- Retries: an attempt whose `SendResult.retry` is set (5xx, timeouts, rate-limit codes) is tried
  again after an exponential backoff, until `attempts` rounds are spent; other refusals go to the
  next channel, else fail. Every attempt is a `notification_sends` row; the row ends `sent` or
  `failed` with its error class and provider code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from alerting.metrics import AlarmMetrics
from alerting.response import tokens
from alerting.response.channels.base import Channel, Message, Recipient, SendResult
from alerting.response.channels.registry import GROUP_TYPES, build_channel
from alerting.response.http import Outbound
from alerting.response.messages import AlarmText, Language, compose
from devices.clock import Clock
from devices.db_errors import UNAVAILABLE
from devices.outbound import OutboundPolicy, Resolver, system_resolver

log = logging.getLogger(__name__)

#: builds a configured channel: (type, config, endpoint, the outbound-checked HTTP client)
ChannelBuilder = Callable[[str, Mapping[str, Any], str | None, Outbound], Channel]


# --- what to send when: pure ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Due:
    """A claimed row of one recipient: `immediate` when its alarm's response is; `members`: the
    rows of an earlier digest it carries (a retry)."""

    id: int
    alarm_id: int
    level: int
    immediate: bool
    members: tuple[int, ...] = ()


@dataclass(slots=True)
class Plan:
    """Messages to send now (each a list of rows; the first carries the others) and the rows that
    wait until `until` (seconds, the recipient's clock)."""

    messages: list[list[Due]] = field(default_factory=list)
    wait: list[Due] = field(default_factory=list)
    until: float | None = None


def plan(
    rows: Sequence[Due], now: float, last_sent: float | None, *, digest_s: float,
    recent_sends: Sequence[float] | None = None, per_min: int = 20,
) -> Plan:
    """What to do with a recipient's due rows at `now`. `last_sent`: when it was last sent a
    message; `recent_sends` (group robots only): its attempts of the last minute."""
    out = Plan()
    budget = len(rows) + 1
    free_at: float | None = None
    if recent_sends is not None:
        recent = sorted(t for t in recent_sends if now - t < 60)
        budget = per_min - len(recent)
        if budget <= 0:
            free_at = recent[len(recent) - per_min] + 60
    first = [r for r in rows if r.immediate or r.members]
    rest = [r for r in rows if not (r.immediate or r.members)]
    held_until = last_sent + digest_s if last_sent is not None and now - last_sent < digest_s else None
    if held_until is not None:
        out.wait, out.until = rest, held_until
        rest = []
    wanted = len(first) + (1 if rest else 0)
    if budget <= 0:
        out.wait, out.until = list(rows), max(free_at or now, held_until or now)
        return out
    if wanted > budget:  # the last message allowed is a digest of the excess
        out.messages = [[r] for r in first[: budget - 1]]
        out.messages.append(first[budget - 1:] + rest)
        return out
    out.messages = [[r] for r in first] + ([rest] if rest else [])
    return out


# --- SQL --------------------------------------------------------------------------------------
#: up to $1 recipients with due rows, the longest waiting first, and all their due rows (at most
#: $3), leased for $2 seconds; a row another worker holds is skipped (it is being served there).
#: A recipient this process holds (responder, group channel, until: $4, $5, $6) is left alone
#: until then unless a row of it is immediate or a digest's retry: its rows would only wait again.
_CLAIM = """
WITH who AS (
    SELECT coalesce(n.responder_id, '') AS r, coalesce(n.group_channel, '') AS g
      FROM notifications n
      LEFT JOIN unnest($4::text[], $5::text[], $6::timestamptz[]) AS h (r, g, until)
        ON h.r = coalesce(n.responder_id, '') AND h.g = coalesce(n.group_channel, '')
     WHERE n.state = 'queued' AND n.digest_of IS NULL AND n.next_at <= clock_timestamp()
       AND (h.until IS NULL OR h.until <= clock_timestamp()
            OR EXISTS (SELECT 1 FROM alarms a WHERE a.alarm_id = n.alarm_id AND a.response = 'immediate')
            OR EXISTS (SELECT 1 FROM notifications m WHERE m.digest_of = n.id))
     GROUP BY 1, 2 ORDER BY min(n.next_at) LIMIT $1
), due AS (
    SELECT n.id FROM notifications n JOIN who ON coalesce(n.responder_id, '') = who.r
                                              AND coalesce(n.group_channel, '') = who.g
     WHERE n.state = 'queued' AND n.digest_of IS NULL AND n.next_at <= clock_timestamp()
     ORDER BY n.id LIMIT $3 FOR UPDATE OF n SKIP LOCKED
), claimed AS (
    UPDATE notifications n SET next_at = clock_timestamp() + make_interval(secs => $2)
      FROM due WHERE n.id = due.id
    RETURNING n.id, n.alarm_id, n.event_id, n.level, n.reason, n.responder_id, n.group_channel, n.attempts
)
SELECT c.*, a.response, clock_timestamp() AS now,
       coalesce(m.ids, '{}') AS members
  FROM claimed c JOIN alarms a ON a.alarm_id = c.alarm_id
  LEFT JOIN LATERAL (SELECT array_agg(m.id ORDER BY m.id) AS ids FROM notifications m
                      WHERE m.digest_of = c.id AND m.state = 'queued'
                        AND m.responder_id IS NOT DISTINCT FROM c.responder_id
                        AND m.group_channel IS NOT DISTINCT FROM c.group_channel) m ON true
 ORDER BY c.id
"""
#: rows that came in for a recipient this process holds (responder, group channel, until: $1,
#: $2, $3) wait for its hold to end, unless immediate or a digest's retry: the claim skips them
_PARK = """
UPDATE notifications n SET next_at = h.until
  FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS h (r, g, until)
 WHERE n.state = 'queued' AND n.digest_of IS NULL AND n.next_at <= clock_timestamp() AND h.until > clock_timestamp()
   AND coalesce(n.responder_id, '') = h.r AND coalesce(n.group_channel, '') = h.g
   AND NOT EXISTS (SELECT 1 FROM alarms a WHERE a.alarm_id = n.alarm_id AND a.response = 'immediate')
   AND NOT EXISTS (SELECT 1 FROM notifications m WHERE m.digest_of = n.id)
"""
_RESPONDER = "SELECT * FROM responders WHERE responder_id = $1"
_CHANNELS = """SELECT name, type, config, endpoint FROM channels
               WHERE name = ANY($1::text[]) AND deleted_at IS NULL"""
_LAST_SENT_PERSONAL = """
SELECT max(n.sent_at) FROM notifications n WHERE n.responder_id = $1 AND n.state IN ('sent', 'acked')
   AND NOT EXISTS (SELECT 1 FROM notifications g WHERE g.id = n.digest_of AND g.group_channel IS NOT NULL)
"""
_LAST_SENT_GROUP = "SELECT max(sent_at) FROM notifications WHERE group_channel = $1 AND state IN ('sent', 'acked')"
_RECENT_SENDS = "SELECT at FROM notification_sends WHERE channel = $1 AND at > clock_timestamp() - interval '60 s'"
#: the group robot's row for (alarm, level, reason): made, or the existing one (after the
#: transaction that is making it, if any: the no-op update waits for it)
_GROUP_ROW = """
INSERT INTO notifications (alarm_id, event_id, level, reason, group_channel) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (alarm_id, coalesce(responder_id, ''), coalesce(group_channel, ''), level, reason)
DO UPDATE SET level = EXCLUDED.level
RETURNING id, state, sent_at
"""
_RIDE = """UPDATE notifications SET digest_of = $2, channel = $3,
                  state = CASE WHEN $4 = 'sent' THEN 'sent' ELSE state END, sent_at = $5,
                  done_at = CASE WHEN $4 = 'sent' THEN clock_timestamp() END
            WHERE id = $1"""
_ALARMS = """
SELECT a.alarm_id, a.type, a.severity, a.response, a.first_seen, u.name AS unit_name, u.address, u.contacts,
       ARRAY(SELECT d.location::text FROM devices d WHERE d.device_id = ANY(a.device_ids) AND d.location IS NOT NULL
             ORDER BY d.device_id) AS locations,
       coalesce((SELECT e.snapshot FROM alarm_events e WHERE e.event_id = ($2::bigint[])[s.i]),
                (SELECT e.snapshot FROM alarm_events e WHERE e.alarm_id = a.alarm_id
                  ORDER BY e.event_id DESC LIMIT 1)) AS snapshot
  FROM unnest($1::bigint[]) WITH ORDINALITY AS s (alarm_id, i)
  JOIN alarms a ON a.alarm_id = s.alarm_id LEFT JOIN units u ON u.unit_id = a.unit_id
 ORDER BY s.i
"""
_SEND = """INSERT INTO notification_sends (notification_id, channel, attempt, ok, error_class, provider_code)
           VALUES ($1, $2, $3, $4, $5, $6)"""
_FINISH = """UPDATE notifications SET state = $2, channel = $3, error_class = $4, provider_code = $5,
                    attempts = attempts + CASE WHEN id = $6 THEN 1 ELSE 0 END, digest_of = nullif($6, id),
                    sent_at = CASE WHEN $2 = 'sent' THEN clock_timestamp() END, done_at = clock_timestamp()
              WHERE id = ANY($1::bigint[])"""
#: responder rows riding on group rows: sent with them, or back to their own channels
_RIDERS_SENT = """UPDATE notifications SET state = 'sent', sent_at = clock_timestamp(), done_at = clock_timestamp()
                   WHERE digest_of = ANY($1::bigint[]) AND state = 'queued' AND responder_id IS NOT NULL"""
_RIDERS_BACK = """UPDATE notifications SET digest_of = NULL, next_at = clock_timestamp()
                   WHERE digest_of = ANY($1::bigint[]) AND state = 'queued' AND responder_id IS NOT NULL"""
_RETRY = """UPDATE notifications SET attempts = attempts + CASE WHEN id = $2 THEN 1 ELSE 0 END,
                   digest_of = nullif($2, id), channel = $3, error_class = $4, provider_code = $5,
                   next_at = clock_timestamp() + make_interval(secs => $6)
             WHERE id = ANY($1::bigint[])"""
_WAIT = "UPDATE notifications SET next_at = $2 WHERE id = ANY($1::bigint[]) AND state = 'queued'"
_FAIL = """UPDATE notifications SET state = 'failed', error_class = $2, done_at = clock_timestamp()
            WHERE id = ANY($1::bigint[])"""
_RELEASE = "UPDATE notifications SET next_at = clock_timestamp() WHERE id = ANY($1::bigint[]) AND state = 'queued'"


def backoff_delay(attempt: int, base_s: float, max_s: float) -> float:
    """Seconds before another try after `attempt` failed ones: doubling from `base_s`, at most `max_s`."""
    return min(base_s * 2 ** (attempt - 1), max_s)


def lease_s(timeout_s: float) -> float:
    """How long a claimed row stays a worker's: longer than a send through two channels can take."""
    return 2 * timeout_s + 30.0


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def place(location: Any) -> str:
    """A device location as text: free text, or an object's text fields (else its lat/lon)."""
    value = _loads(location)
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        text = " ".join(str(v) for k, v in value.items() if k not in ("lat", "lon") and v not in (None, ""))
        return text or f"{value.get('lat')},{value.get('lon')}"
    return str(value)


def _duty_phone(contacts: Any) -> str | None:
    for c in _loads(contacts) or []:
        if isinstance(c, dict) and c.get("phone"):
            return str(c["phone"])
    return None


async def channels_named(db: asyncpg.Pool | asyncpg.Connection, names: Sequence[str]) -> dict[str, asyncpg.Record]:
    """The stored, not deleted channels of `names`, by name."""
    return {r["name"]: r for r in await db.fetch(_CHANNELS, list(names))}


async def send_through(
    build: ChannelBuilder, http: Outbound, ch: Mapping[str, Any], message: Message, recipient: Recipient
) -> SendResult:
    """One attempt through a stored channel (`name`, `type`, `config`, `endpoint`); a configuration
    the adapter cannot use fails as `config`."""
    try:
        channel = build(ch["type"], _loads(ch["config"]), ch["endpoint"], http)
        return await channel.send(message, recipient)
    except ValueError as e:  # a configuration the adapter cannot use
        log.warning("channel %s cannot send: %s", ch["name"], e)
        return SendResult(False, "config")


@dataclass(slots=True)
class _Row:
    """A claimed row with what serving it needs."""

    id: int
    alarm_id: int
    event_id: int | None
    level: int
    reason: str
    responder_id: str | None
    group_channel: str | None
    attempts: int
    immediate: bool
    members: tuple[int, ...]

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> _Row:
        return cls(r["id"], r["alarm_id"], r["event_id"], r["level"], r["reason"], r["responder_id"],
                   r["group_channel"], r["attempts"], r["response"] == "immediate", tuple(r["members"]))


class Notifier:
    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Clock,
        *,
        policy: OutboundPolicy | None = None,
        resolve: Resolver = system_resolver,
        build: ChannelBuilder = build_channel,
        public_url: str | None = None,
        language: Language = "zh",
        device_tz: str = "Asia/Shanghai",
        attempts: int = 5,
        backoff_s: float = 1.0,
        backoff_max_s: float = 300.0,
        timeout_s: float = 5.0,
        poll_s: float = 1.0,
        batch: int = 100,
        concurrency: int = 16,
        digest_s: float = 10.0,
        group_per_min: int = 20,
        metrics: AlarmMetrics | None = None,
    ) -> None:
        self.pool = pool
        self.clock = clock
        self.policy = policy if policy is not None else OutboundPolicy()
        self.resolve = resolve
        self.build = build
        self.public_url = public_url
        self.language = language
        self.tz = ZoneInfo(device_tz)
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.batch = batch
        self.concurrency = concurrency
        self._busy = 0
        self.digest_s = digest_s
        self.group_per_min = group_per_min
        self.lease_s = lease_s(timeout_s)
        self.metrics = metrics
        self._wake = asyncio.Event()
        self._locks: dict[str, asyncio.Lock] = {}
        #: (responder, group channel) -> until when its non-immediate rows wait (`plan`)
        self._held: dict[tuple[str, str], datetime] = {}
        self._counted_at = 0.0
        self._warned_no_link = False

    def wake(self) -> None:
        """New rows are queued: look now instead of at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Send due notifications until cancelled."""
        async with Outbound(self.policy, self.timeout_s, self.resolve) as http, asyncio.TaskGroup() as tg:
            while True:
                self._wake.clear()
                rows: list[asyncpg.Record] = []
                free = self.concurrency - self._busy  # recipients served at once, at most
                try:
                    if free > 0:
                        held = list(self._held.items())
                        keys = ([k[0] for k, _ in held], [k[1] for k, _ in held], [u for _, u in held])
                        if held:
                            await self.pool.execute(_PARK, *keys)
                        rows = await self.pool.fetch(_CLAIM, free, self.lease_s, self.batch * free, *keys)
                        for k, u in held:  # holds that ended
                            if rows and u <= rows[0]["now"] and self._held.get(k) == u:
                                del self._held[k]
                    if self.metrics and time.monotonic() - self._counted_at >= self.poll_s:
                        self._counted_at = time.monotonic()
                        self.metrics.notify_pending.set(await self.pool.fetchval(
                            "SELECT count(*) FROM notifications WHERE state = 'queued'"))
                except (*UNAVAILABLE, asyncpg.PostgresError) as e:
                    log.error("cannot read the notifications (%s); retrying", e)
                by_recipient: dict[str, list[_Row]] = {}
                for r in rows:
                    key = f"r:{r['responder_id']}" if r["responder_id"] is not None else f"g:{r['group_channel']}"
                    by_recipient.setdefault(key, []).append(_Row.from_record(r))
                for key, claimed in by_recipient.items():
                    self._busy += 1
                    tg.create_task(self._serve(http, key, claimed, rows[0]["now"]))
                if len(by_recipient) < free or self._busy >= self.concurrency:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.poll_s):
                            await self._wake.wait()

    async def _serve(self, http: Outbound, key: str, rows: list[_Row], now: datetime) -> None:
        """One recipient's claimed rows, after any message to it still in flight here."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                if rows[0].responder_id is not None:
                    await self._serve_responder(http, rows[0].responder_id, rows, now)
                else:
                    assert rows[0].group_channel is not None
                    await self._serve_group(http, rows[0].group_channel, rows, now)
        except asyncio.CancelledError:
            with contextlib.suppress(*UNAVAILABLE, asyncpg.PostgresError):
                await self.pool.execute(_RELEASE, [r.id for r in rows])
            raise
        except Exception:  # one recipient must not stop the worker; the lease makes its rows due again
            log.exception("notifications %s of %s failed", [r.id for r in rows], key)
        finally:
            self._busy -= 1
            self._wake.set()

    async def _channels(self, names: Sequence[str]) -> dict[str, asyncpg.Record]:
        return await channels_named(self.pool, names)

    async def _serve_responder(
        self, http: Outbound, responder_id: str, rows: list[_Row], now: datetime
    ) -> None:
        responder = await self.pool.fetchrow(_RESPONDER, responder_id)
        if responder is None or responder["deleted_at"] is not None:
            await self.pool.execute(_FAIL, [r.id for r in rows], "responder deleted")
            return
        channels = await self._channels(responder["channels"])
        personal: list[_Row] = []
        for row in rows:
            if row.members:
                personal.append(row)
                continue
            route = await self._route(row, responder["channels"], channels)
            if route == "personal":
                personal.append(row)
            elif route is None:
                await self.pool.execute(_FAIL, [row.id], "no channel")
        if not personal:
            return
        ordered = [channels[n] for n in responder["channels"]
                   if n in channels and channels[n]["type"] not in GROUP_TYPES]
        last = await self.pool.fetchval(_LAST_SENT_PERSONAL, responder_id)
        recipient = Recipient(responder["name"], responder["phone"], responder["email"])
        await self._dispatch(http, personal, ordered, recipient, now, last, None, responder_id=responder_id)

    async def _route(self, row: _Row, names: Sequence[str], channels: Mapping[str, asyncpg.Record]) -> str | None:
        """Where a responder's row goes: 'personal', 'group' (now riding on a robot's row), or
        None when no channel is left."""
        for name in names:
            ch = channels.get(name)
            if ch is None:
                continue
            if ch["type"] not in GROUP_TYPES:
                return "personal"
            group = await self.pool.fetchrow(_GROUP_ROW, row.alarm_id, row.event_id, row.level, row.reason, name)
            if group["state"] == "failed":
                continue  # that robot failed for this alarm and level: the next channel
            await self.pool.execute(_RIDE, row.id, group["id"], name, group["state"], group["sent_at"])
            self._wake.set()
            return "group"
        return None

    async def _serve_group(self, http: Outbound, name: str, rows: list[_Row], now: datetime) -> None:
        channels = await self._channels([name])
        if name not in channels:
            await self.pool.execute(_FAIL, [r.id for r in rows], "no channel")
            await self.pool.execute(_RIDERS_BACK, [r.id for r in rows])
            return
        last = await self.pool.fetchval(_LAST_SENT_GROUP, name)
        recent = [r["at"] for r in await self.pool.fetch(_RECENT_SENDS, name)]
        await self._dispatch(http, rows, [channels[name]], Recipient(name), now, last, recent, group_channel=name)

    async def _dispatch(
        self, http: Outbound, rows: list[_Row], channels: Sequence[asyncpg.Record], recipient: Recipient,
        now: datetime, last: datetime | None, recent: list[datetime] | None, *, responder_id: str | None = None,
        group_channel: str | None = None,
    ) -> None:
        """Send what `plan` says is due now (`now`: the database's clock at the claim); the rest waits."""
        epoch = now - timedelta(hours=1)

        def s(t: datetime) -> float:
            return (t - epoch).total_seconds()

        due = [Due(r.id, r.alarm_id, r.level, r.immediate, r.members) for r in rows]
        p = plan(due, s(now), None if last is None else s(last), digest_s=self.digest_s,
                 recent_sends=None if recent is None else [s(t) for t in recent], per_min=self.group_per_min)
        if p.wait:
            assert p.until is not None
            until = epoch + timedelta(seconds=p.until)
            await self.pool.execute(_WAIT, [d.id for d in p.wait], until)
            self._held[(responder_id or "", group_channel or "")] = until
        by_id = {r.id: r for r in rows}
        for message_rows in p.messages:
            carrier = by_id[message_rows[0].id]
            ids = [d.id for d in message_rows] + [m for d in message_rows for m in d.members]
            await self._deliver(http, carrier, ids, channels, recipient, responder_id, group_channel)

    async def _texts(
        self, ids: list[int], responder_id: str | None, group_channel: str | None
    ) -> tuple[list[AlarmText], int]:
        """The alarms a message carries (one per row, in row order), each with its link token;
        and the level of the message (the highest of its rows)."""
        rows = await self.pool.fetch(
            "SELECT id, alarm_id, event_id, level FROM notifications WHERE id = ANY($1::bigint[])", ids)
        position = {i: k for k, i in enumerate(ids)}
        order = sorted(rows, key=lambda r: position[r["id"]])
        alarm_ids = [r["alarm_id"] for r in order]
        found = await self.pool.fetch(_ALARMS, alarm_ids, [r["event_id"] for r in order])
        links = await self._tokens(list(dict.fromkeys(a["alarm_id"] for a in found)), responder_id, group_channel)
        texts: list[AlarmText] = []
        seen: set[int] = set()
        for a in found:
            if a["alarm_id"] in seen:
                continue
            seen.add(a["alarm_id"])
            texts.append(AlarmText(
                alarm_id=a["alarm_id"], type=a["type"], severity=a["severity"], response=a["response"],
                first_seen=a["first_seen"], unit_name=a["unit_name"], address=a["address"],
                duty_phone=_duty_phone(a["contacts"]), device_locations=tuple(place(x) for x in a["locations"]),
                token=links.get(a["alarm_id"]), alarm=_loads(a["snapshot"]) or {},
            ))
        return texts, max(r["level"] for r in rows)

    async def _tokens(
        self, alarm_ids: list[int], responder_id: str | None, group_channel: str | None
    ) -> dict[int, str | None]:
        """A new link token per alarm of a message (one statement, however long the digest)."""
        if not self.public_url:
            if not self._warned_no_link:
                log.warning("MIAOXIANG_PUBLIC_URL is not set: messages go without a responder link")
                self._warned_no_link = True
            return {}
        return await tokens.issue_many(self.pool, alarm_ids, responder_id=responder_id, group_channel=group_channel)

    async def _deliver(
        self, http: Outbound, carrier: _Row, ids: list[int], channels: Sequence[asyncpg.Record],
        recipient: Recipient, responder_id: str | None, group_channel: str | None,
    ) -> None:
        """One message (one row, or a digest) through the channels in order; recorded."""
        texts, level = await self._texts(ids, responder_id, group_channel)
        if not texts:
            await self.pool.execute(_FAIL, ids, "alarm missing")
            return
        # A message's id (webhook receivers dedupe on it) is the newest row it carries: resent after a
        # crash with the same rows it is the same id; with rows added since, a new one (newer rows have
        # higher ids), so a receiver never drops a message for having seen its carrier before.
        message = compose(texts, level, self.public_url, self.tz, self.language, notification_id=max(ids))
        attempt = carrier.attempts + 1
        sends: list[tuple[Any, ...]] = []
        retry = False
        last = SendResult(False, "no channel")
        used = channels[-1]["name"] if channels else None
        for ch in channels:
            used = ch["name"]
            last = await self._send(http, ch, message, recipient)
            self._count(ch["type"], last)
            sends.append((carrier.id, ch["name"], attempt, last.ok, last.error_class, last.provider_code))
            if last.ok:
                break
            retry = retry or last.retry
        again = not last.ok and retry and attempt < self.attempts
        if not last.ok and not again and self.metrics:
            self.metrics.notify_failed.inc()
        async with self.pool.acquire() as conn, conn.transaction():  # the attempts and their outcome together
            await conn.executemany(_SEND, sends)
            if last.ok:
                await conn.execute(_FINISH, ids, "sent", used, None, None, carrier.id)
                await conn.execute(_RIDERS_SENT, ids)
            elif again:
                delay = backoff_delay(attempt, self.backoff_s, self.backoff_max_s)
                await conn.execute(_RETRY, ids, carrier.id, used, last.error_class, last.provider_code, delay)
            else:
                await conn.execute(_FINISH, ids, "failed", used, last.error_class, last.provider_code, carrier.id)
                await conn.execute(_RIDERS_BACK, ids)
        if not last.ok and not again:
            self._wake.set()  # riders may go on to their next channel

    async def _send(
        self, http: Outbound, ch: asyncpg.Record, message: Message, recipient: Recipient
    ) -> SendResult:
        return await send_through(self.build, http, ch, message, recipient)

    def _count(self, kind: str, result: SendResult) -> None:
        m = self.metrics
        if m is None:
            return
        ok = str(result.ok).lower()
        m.notify_attempts.labels(ok).inc()
        m.notify_sends.labels(kind, ok).inc()

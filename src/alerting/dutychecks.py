"""查岗 duty checks (CONTRACT §11): the centre asks a transmission device's person on duty to
answer within `answer_minutes`, and records what happened.

A check is `sent`, then `confirmed` when the device confirmed the request frame, `answered` when
a type-24 operation record with the duty-answer flag was received by the deadline, or `missed`
(raising `duty_missed`, minor, verify); a device without a session is `unreachable` at once.

Layering (docs/supervision.md): ingest may not import alerting, so both directions go through
what the composition root wires. Sending is a `DutySender` callable (the root's wraps the
GB/T 26875 listener's request); the answer arrives as an ordinary reading (the type-24 record is
mapped to a `report` whose `extra.operations` holds `duty_check_answer` and stored in `readings`),
which `DutyChecks.tick` matches by device and receipt time. Optional daily random checks: one
check a local day for each region of `random_regions`, of a uitd picked at random, at a random
time between 08:00 and 20:00.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import asyncpg

from alerting.lifecycle import AlarmLifecycle, to_dt
from alerting.model import AlarmType, Decision, Response, Severity
from devices.clock import Clock
from devices.scope import like_escape

log = logging.getLogger(__name__)

#: What sending a check came to: the device confirmed it, it has no session, or it did not
#: confirm (the check stays `sent` and is missed unless the answer still comes).
SendOutcome = Literal["confirmed", "unreachable", "sent"]
DutySender = Callable[[str, int], Awaitable[SendOutcome]]
STATES = ("sent", "confirmed", "answered", "missed", "unreachable")
#: A check is declared missed this long after its deadline: the answer may still be on its way
#: through the readings writer.
GRACE = timedelta(seconds=30)
#: Requests in flight at once when a region is checked.
CONCURRENCY = 32
#: Random checks fall between these local times.
RANDOM_FROM, RANDOM_TO = time(8), time(20)
#: Transmission devices, not their panel components.
UITD_SQL = "d.kind = 'uitd' AND d.parent_id IS NULL AND d.device_id ~ '^uitd-[0-9]+$'"

_ROW = """check_id, device_id, unit_id, region, industry, answer_minutes, state, origin, requested_by,
          sent_at, deadline, confirmed_at, answered_at, missed_at, alarm_id"""
_ANSWERS = """
SELECT c.check_id, c.device_id, c.unit_id, c.region, c.deadline, c.sent_at,
       (SELECT min(r.received_at) FROM readings r
         WHERE r.device_id = c.device_id AND r.event = 'report'
           AND r.ts >= c.sent_at - interval '1 day' AND r.ts <= c.deadline + interval '1 day'
           AND r.received_at >= c.sent_at AND r.received_at <= c.deadline
           AND r.extra -> 'operations' ? 'duty_check_answer') AS answered_at
  FROM duty_checks c
 WHERE c.state IN ('sent', 'confirmed')
"""


@dataclass(frozen=True, slots=True)
class Target:
    """A transmission device to check, with where it belongs."""

    device_id: str
    unit_id: str | None
    region: str
    industry: str


def check_json(row: asyncpg.Record) -> dict[str, Any]:
    """A check as the API shows it: times in RFC 3339, `alarm_id` a string like the alarm's own."""
    out = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in dict(row).items()}
    if out["alarm_id"] is not None:
        out["alarm_id"] = str(out["alarm_id"])
    return out


def random_time(day: date, region: str) -> time:
    """When the day's random check of a region is due: fixed per (day, region), so a restart
    does not move it, and unknown to the person on duty."""
    seed = hashlib.sha256(f"{day.isoformat()}|{region}".encode()).digest()
    span = (RANDOM_TO.hour - RANDOM_FROM.hour) * 3600
    s = RANDOM_FROM.hour * 3600 + int.from_bytes(seed[:4], "big") % span
    return time(s // 3600, s % 3600 // 60, s % 60)


def missed_decision(row: asyncpg.Record, now_ms: int) -> Decision:
    """The `duty_missed` alarm of a check nobody answered."""
    evidence = {"check_id": row["check_id"], "sent_at": row["sent_at"].isoformat(),
                "deadline": row["deadline"].isoformat()}
    return Decision(
        "raise", f"device:{row['device_id']}", AlarmType.duty_missed, Severity.minor, Response.verify,
        "duty_missed", now_ms, device_ids=[row["device_id"]], unit_id=row["unit_id"], evidence=[evidence],
    )


class DutyChecks:
    """Sends checks, records them in `duty_checks`, and settles them (`tick`)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        lifecycle: AlarmLifecycle,
        clock: Clock,
        sender: DutySender | None,
        *,
        random_regions: Sequence[str] = (),
        device_tz: str = "Asia/Shanghai",
    ) -> None:
        self.pool = pool
        self.lifecycle = lifecycle
        self.clock = clock
        self.sender = sender
        self.random_regions = tuple(random_regions)
        self.tz = ZoneInfo(device_tz)

    async def targets(self, where: str, *args: Any) -> list[Target]:
        """The transmission devices matching `where` (over `d` devices and `u` units)."""
        rows = await self.pool.fetch(
            f"""SELECT d.device_id, d.unit_id, coalesce(u.region, '') AS region,
                       coalesce(u.industry, 'other') AS industry
                  FROM devices d LEFT JOIN units u ON u.unit_id = d.unit_id
                 WHERE {UITD_SQL} AND {where} ORDER BY d.device_id""",
            *args,
        )
        return [Target(r["device_id"], r["unit_id"], r["region"], r["industry"]) for r in rows]

    async def start(
        self, targets: Sequence[Target], minutes: int, by: str, origin: str = "manual"
    ) -> list[dict[str, Any]]:
        """Send a check to each target (at most CONCURRENCY at once) and answer the recorded checks."""
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(t: Target) -> dict[str, Any]:
            async with gate:
                return await self._send(t, minutes, by, origin)

        return list(await asyncio.gather(*(one(t) for t in targets)))

    async def _send(self, t: Target, minutes: int, by: str, origin: str) -> dict[str, Any]:
        sent = to_dt(self.clock())
        row = await self.pool.fetchrow(
            f"""INSERT INTO duty_checks (device_id, unit_id, region, industry, answer_minutes, origin, requested_by,
                                         sent_at, deadline)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {_ROW}""",
            t.device_id, t.unit_id, t.region, t.industry, minutes, origin, by, sent, sent + timedelta(minutes=minutes),
        )
        assert row is not None
        outcome: SendOutcome = "unreachable" if self.sender is None else await self.sender(t.device_id, minutes)
        if outcome == "sent":
            return check_json(row)
        updated = await self.pool.fetchrow(
            f"""UPDATE duty_checks
                   SET state = $2::text, confirmed_at = CASE WHEN $2::text = 'confirmed' THEN $3::timestamptz END
                 WHERE check_id = $1 AND state = 'sent' RETURNING {_ROW}""",
            row["check_id"], outcome, to_dt(self.clock()),
        )
        return check_json(updated or row)

    async def run(self, interval_s: float = 10.0) -> None:
        """Settle checks every `interval_s` until cancelled (a failed tick is logged and retried)."""
        while True:
            try:
                await self.tick(self.clock())
            except (asyncpg.PostgresError, OSError) as e:
                log.warning("duty checks not settled: %r", e)
            await asyncio.sleep(interval_s)

    async def tick(self, now_ms: int) -> None:
        """Settle pending checks: answered when their answer is in, missed (with the alarm) once
        past the deadline and its grace; then the day's random checks that are due."""
        now = to_dt(now_ms)
        for row in await self.pool.fetch(_ANSWERS):
            if row["answered_at"] is not None:
                await self.pool.execute(
                    "UPDATE duty_checks SET state = 'answered', answered_at = $2 WHERE check_id = $1 "
                    "AND state IN ('sent', 'confirmed')", row["check_id"], row["answered_at"],
                )
            elif now > row["deadline"] + GRACE:
                await self._miss(row, now_ms)
        if self.random_regions:
            await self._random(now)

    async def _miss(self, row: asyncpg.Record, now_ms: int) -> None:
        claimed = await self.pool.execute(
            "UPDATE duty_checks SET state = 'missed', missed_at = $2 "
            "WHERE check_id = $1 AND state IN ('sent', 'confirmed')",
            row["check_id"], to_dt(now_ms),
        )
        if claimed != "UPDATE 1":
            return
        await self.lifecycle.handle([missed_decision(row, now_ms)])
        await self.pool.execute(
            """UPDATE duty_checks c SET alarm_id = a.alarm_id
                 FROM alarms a
                WHERE c.check_id = $1 AND a.alarm_key = $2 AND a.type = 'duty_missed'
                  AND a.status IN ('active_unack', 'active_ack', 'cleared_unack')""",
            row["check_id"], f"device:{row['device_id']}",
        )

    async def _random(self, now: datetime) -> None:
        local = now.astimezone(self.tz)
        day = local.date()
        start = datetime.combine(day, time(), self.tz).astimezone(UTC)
        for region in self.random_regions:
            if local.time() < random_time(day, region):
                continue
            done = await self.pool.fetchval(
                "SELECT 1 FROM duty_checks "
                "WHERE origin = 'random' AND sent_at >= $1 AND (region = $2 OR region LIKE $3)",
                start, region, like_escape(region) + "/%",
            )
            if done:
                continue
            candidates = await self.targets("(u.region = $1 OR u.region LIKE $2)", region, like_escape(region) + "/%")
            if candidates:
                await self.start([random.choice(candidates)], 10, "system", origin="random")

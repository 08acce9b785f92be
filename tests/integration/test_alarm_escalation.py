"""Escalation on an injected clock, delivered to a real local webhook receiver (uvicorn on
127.0.0.1), every attempt recorded in notification_sends, failures retried (CONTRACT §8 v2, §9).

v1 escalation contacts (`region_contacts`) and unit contacts with webhooks are responders with
webhook channels (migrations 0010, 0014), so these tests still configure people the v1 way; the
v2 wording changes what they expect: an `immediate` alarm is raised at level 1 (unit contacts and
grid workers told at once), and only the fire class climbs past level 1."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import uvicorn
from prometheus_client import CollectorRegistry

from alerting.lifecycle import AlarmLifecycle
from alerting.metrics import AlarmMetrics
from alerting.model import AlarmType, Decision, Response, Severity
from alerting.response.notifier import Notifier
from alerting.stream import AlarmHub, db_replay
from devices.fleet import Fleet
from devices.kinds import Kind
from devices.outbound import OutboundPolicy
from miaoxiang.embedded import free_port
from miaoxiang.migrate import migrate
from miaoxiang.settings import DEFAULT_MIGRATIONS_DIR
from tests.clock import Clock
from tests.service import wait_for

pytestmark = pytest.mark.integration
T0 = 1_795_341_600_000
LOCAL = OutboundPolicy.parse(["127.0.0.1"])  # the receivers listen on loopback (CONTRACT §9)
REGION = "江西省/赣州市/章贡区/南外街道"


class Receiver:
    """A webhook endpoint: /ok/* answers 200, /flaky/* 503 on the first call then 200,
    /broken/* 500, /gone/* 404, /held/* waits until `release` is set."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.failed_once: set[str] = set()
        self.release = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        self.calls.append((path, json.loads(body)))
        status = 200
        if path.startswith("/flaky") and path not in self.failed_once:
            self.failed_once.add(path)
            status = 503
        elif path.startswith("/broken"):
            status = 500
        elif path.startswith("/gone"):
            status = 404
        elif path.startswith("/held"):
            await self.release.wait()
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    app = Receiver()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            await asyncio.sleep(0.01)
    yield app, f"http://127.0.0.1:{port}"
    app.release.set()
    server.should_exit = True
    await task


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(database_url, min_size=1, max_size=6)
    async with p.acquire() as conn:
        await migrate(conn, DEFAULT_MIGRATIONS_DIR)
    yield p
    await p.close()


@contextlib.asynccontextmanager
async def escalating(pool: asyncpg.Pool, clock: Clock) -> AsyncIterator[AlarmLifecycle]:
    """A lifecycle whose notifier worker runs for the duration."""
    fleet = Fleet()
    fleet.set_unit("U1", region=REGION)
    fleet.upsert("D1", Kind.smoke, unit_id="U1")
    fleet.upsert("E1", Kind.electrical, unit_id="U1")
    metrics = AlarmMetrics(CollectorRegistry())
    notifier = Notifier(pool, clock, policy=LOCAL, attempts=3, backoff_s=0.02, poll_s=0.05, digest_s=0.2,
                        metrics=metrics)
    lifecycle = AlarmLifecycle(pool, AlarmHub(db_replay(pool)), fleet, clock, notifier=notifier, metrics=metrics)
    worker = asyncio.create_task(notifier.run())
    try:
        yield lifecycle
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker


async def add_contacts(pool: asyncpg.Pool, rows: list[tuple[str, int, str, str]]) -> None:
    await pool.executemany("INSERT INTO region_contacts (region, level, name, webhook) VALUES ($1, $2, $3, $4)", rows)


def decision(ts: int, device: str, type: AlarmType, response: Response, rule: str) -> Decision:
    return Decision("raise", f"device:{device}", type, Severity.major, response, rule, ts, [device], None,
                    [{"device_id": device, "ts_ms": ts}])


async def level(pool: asyncpg.Pool) -> int:
    return await pool.fetchval("SELECT escalation_level FROM alarms")


async def attempts(pool: asyncpg.Pool) -> list[tuple[int, str, int, bool]]:
    """Every attempt: (level, the channel's URL, attempt, ok)."""
    rows = await pool.fetch(
        """SELECT n.level, c.config ->> 'url' AS target, s.attempt, s.ok FROM notification_sends s
             JOIN notifications n ON n.id = s.notification_id JOIN channels c ON c.name = s.channel
            ORDER BY 1, 2, 3""")
    return [(r["level"], r["target"], r["attempt"], r["ok"]) for r in rows]


async def test_immediate_alarm_starts_at_level_one_climbs_a_level_a_minute_and_notifies_matching_contacts(
    pool: asyncpg.Pool, receiver: tuple[Receiver, str]
) -> None:
    rx, url = receiver
    await add_contacts(pool, [
        ("江西省", 0, "unit-desk", f"{url}/ok/unit"),
        ("江西省/赣州市", 1, "grid", f"{url}/flaky/grid"),
        ("江西省", 1, "gone", f"{url}/gone/1"),
        ("江西省/赣州市/章贡区", 2, "station", f"{url}/ok/station"),
        ("江西省", 2, "broken", f"{url}/broken/2"),
        ("", 3, "119", f"{url}/ok/dispatch"),
        ("浙江省", 0, "elsewhere", f"{url}/ok/elsewhere"),
        ("江西省/南昌市", 1, "other-city", f"{url}/ok/other-city"),
    ])
    clock = Clock(T0)
    async with escalating(pool, clock) as lc:
        await lc.handle([decision(T0, "D1", AlarmType.smoke, Response.immediate, "smoke_temp_57c")])
        assert await level(pool) == 1  # unit contacts and grid workers at once
        for now, expected in ((59_999, 1), (60_000, 2), (119_999, 2), (120_000, 3), (600_000, 3)):
            clock.now = T0 + now
            await lc.tick(clock.now)
            assert await level(pool) == expected
        await wait_for(lambda: len(rx.calls) >= 9)
        await wait_for(lambda: _count(pool, 9))
    assert await attempts(pool) == [
        (0, f"{url}/ok/unit", 1, True),
        (1, f"{url}/flaky/grid", 1, False), (1, f"{url}/flaky/grid", 2, True),  # 503, retried
        (1, f"{url}/gone/1", 1, False),  # 404: not retried
        (2, f"{url}/broken/2", 1, False), (2, f"{url}/broken/2", 2, False), (2, f"{url}/broken/2", 3, False),
        (2, f"{url}/ok/station", 1, True),
        (3, f"{url}/ok/dispatch", 1, True),
    ]
    assert not any("elsewhere" in p or "other-city" in p for p, _ in rx.calls)
    _, body = next(c for c in rx.calls if c[0] == "/ok/dispatch")
    assert (body["level"], body["level_name"], body["contact"]) == (3, "fire_brigade_dispatch", "119")
    assert body["alarm"]["escalation_level"] == 3 and body["alarm"]["region"] == REGION
    timeline = await pool.fetch("SELECT action, detail FROM alarm_events ORDER BY event_id")
    assert [(e["action"], json.loads(e["detail"]).get("to")) for e in timeline] == [
        ("raised", None), ("escalated", "micro_fire_station"), ("escalated", "fire_brigade_dispatch")]


async def _count(pool: asyncpg.Pool, n: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM notification_sends") >= n


async def _sent(pool: asyncpg.Pool, n: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM notifications WHERE state = 'sent'") >= n


async def test_verify_alarm_climbs_every_five_minutes_until_acknowledged_and_only_fire_class_past_level_one(
    pool: asyncpg.Pool, receiver: tuple[Receiver, str]
) -> None:
    rx, url = receiver
    await add_contacts(pool, [("江西省", lvl, f"c{lvl}", f"{url}/ok/{lvl}") for lvl in range(4)])
    clock = Clock(T0)
    async with escalating(pool, clock) as lc:
        await lc.handle([decision(T0, "E1", AlarmType.residual_current, Response.verify, "residual_current_300ma")])
        for now, expected in ((60_000, 0), (299_999, 0), (300_000, 1), (599_999, 1), (900_000, 1)):
            clock.now = T0 + now
            await lc.tick(clock.now)
            assert await level(pool) == expected  # residual current: level 1 at most
        await wait_for(lambda: _count(pool, 2))
        # a verify smoke alarm: level 0; unacknowledged for 60 s it becomes immediate and goes at once
        # to level 1 (the unit contact already told gets one update), then climbs every 60 s
        clock.now = T0 + 1_000_000
        await lc.handle([decision(clock.now, "D1", AlarmType.smoke, Response.verify, "smoke.single")])
        smoke = await pool.fetchval("SELECT alarm_id FROM alarms WHERE type = 'smoke'")
        await wait_for(lambda: _count(pool, 3))
        for now, expected in ((1_059_999, 0), (1_060_000, 1), (1_119_999, 1), (1_120_000, 2)):
            clock.now = T0 + now
            await lc.tick(clock.now)
            assert await pool.fetchval("SELECT escalation_level FROM alarms WHERE alarm_id = $1", smoke) == expected
        await lc.acknowledge(smoke, "op")
        clock.now = T0 + 3_600_000
        await lc.tick(clock.now)
        assert await pool.fetchval("SELECT escalation_level FROM alarms WHERE alarm_id = $1", smoke) == 2
        await wait_for(lambda: _sent(pool, 6))
    assert sorted(p for p, _ in rx.calls) == ["/ok/0", "/ok/0", "/ok/0", "/ok/1", "/ok/1", "/ok/2"]
    told = await pool.fetch("SELECT level, reason, state FROM notifications WHERE alarm_id = $1 ORDER BY id", smoke)
    assert [tuple(r) for r in told] == [(0, "level", "sent"), (1, "upgrade", "sent"), (1, "level", "sent"),
                                        (2, "level", "sent")]


async def test_response_none_never_notifies_or_escalates(pool: asyncpg.Pool, receiver: tuple[Receiver, str]) -> None:
    rx, url = receiver
    await add_contacts(pool, [("", lvl, f"c{lvl}", f"{url}/ok/{lvl}") for lvl in range(4)])
    clock = Clock(T0)
    async with escalating(pool, clock) as lc:
        await lc.handle([decision(T0, "D1", AlarmType.smoke, Response.none, "test_event")])
        clock.now = T0 + 36_000_000
        await lc.tick(clock.now)
        await asyncio.sleep(0.1)
    assert await level(pool) == 0 and rx.calls == [] and await attempts(pool) == []


async def test_slow_webhook_does_not_hold_up_the_tick(pool: asyncpg.Pool, receiver: tuple[Receiver, str]) -> None:
    rx, url = receiver
    await add_contacts(pool, [("江西省", 1, "held", f"{url}/held/1"), ("江西省", 2, "ok", f"{url}/ok/2")])
    clock = Clock(T0)
    async with escalating(pool, clock) as lc:
        await lc.handle([decision(T0, "D1", AlarmType.smoke, Response.immediate, "multi_detector_120s")])
        await wait_for(lambda: any(p == "/held/1" for p, _ in rx.calls))  # the level-1 call hangs ...
        clock.now = T0 + 60_000
        await lc.tick(clock.now)  # ... and the next level still goes out
        await wait_for(lambda: _count(pool, 1))
        assert await attempts(pool) == [(2, f"{url}/ok/2", 1, True)]
        rx.release.set()
        await wait_for(lambda: _count(pool, 2))
    assert await attempts(pool) == [(1, f"{url}/held/1", 1, True), (2, f"{url}/ok/2", 1, True)]


@contextlib.asynccontextmanager
async def notifier_running(pool: asyncpg.Pool, clock: Clock, **options: Any) -> AsyncIterator[Notifier]:
    notifier = Notifier(pool, clock, policy=LOCAL, backoff_s=0.02, poll_s=0.05, **options)
    worker = asyncio.create_task(notifier.run())
    try:
        yield notifier
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker


async def outbox(pool: asyncpg.Pool) -> list[tuple[int, str, int]]:
    rows = await pool.fetch("SELECT level, state, attempts FROM notifications ORDER BY level")
    return [(r["level"], r["state"], r["attempts"]) for r in rows]


async def test_notifications_written_with_the_escalation_survive_a_restart(
    pool: asyncpg.Pool, database_url: str, receiver: tuple[Receiver, str]
) -> None:
    rx, url = receiver
    await add_contacts(pool, [("江西省", 0, "unit", f"{url}/ok/0"), ("江西省/赣州市", 1, "grid", f"{url}/ok/1")])
    clock = Clock(T0)
    fleet = Fleet()
    fleet.set_unit("U1", region=REGION)
    fleet.upsert("D1", Kind.smoke, unit_id="U1")
    # the first process raises (levels 0 and 1 at once), then dies before its notifier sends anything
    lifecycle = AlarmLifecycle(pool, AlarmHub(db_replay(pool)), fleet, clock, notifier=Notifier(pool, clock))
    await lifecycle.handle([decision(T0, "D1", AlarmType.smoke, Response.immediate, "smoke.heat")])
    assert await level(pool) == 1
    assert await outbox(pool) == [(0, "queued", 0), (1, "queued", 0)]
    assert rx.calls == []
    # the restarted process (its own pool) delivers what the outbox holds
    restarted = await asyncpg.create_pool(database_url, min_size=1, max_size=3)
    try:
        async with notifier_running(restarted, clock):
            await wait_for(lambda: _count(pool, 2))
    finally:
        await restarted.close()
    told = sorted((p, b["level"], b["alarm"]["escalation_level"]) for p, b in rx.calls)
    assert told == [("/ok/0", 0, 1), ("/ok/1", 1, 1)]
    assert len({b["notification_id"] for _, b in rx.calls}) == 2
    assert await outbox(pool) == [(0, "sent", 1), (1, "sent", 1)]
    assert await attempts(pool) == [(0, f"{url}/ok/0", 1, True), (1, f"{url}/ok/1", 1, True)]


async def test_a_webhook_down_across_a_restart_still_gets_the_notification(pool: asyncpg.Pool) -> None:
    port = free_port()
    await add_contacts(pool, [("", 0, "unit", f"http://127.0.0.1:{port}/ok/0")])
    clock = Clock(T0)
    fleet = Fleet()
    fleet.upsert("D1", Kind.smoke)
    async with notifier_running(pool, clock, attempts=20) as notifier:
        lifecycle = AlarmLifecycle(pool, AlarmHub(db_replay(pool)), fleet, clock, notifier=notifier)
        await lifecycle.handle([decision(T0, "D1", AlarmType.smoke, Response.verify, "smoke.single")])
        await wait_for(lambda: _count(pool, 1))  # refused: nothing listens yet; retried with backoff
    [(_, state, tried)] = await outbox(pool)
    assert state == "queued" and tried >= 1
    rx = Receiver()
    server = uvicorn.Server(uvicorn.Config(rx, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        async with notifier_running(pool, clock, attempts=20):  # the restarted notifier
            await wait_for(lambda: _ok(pool))
    finally:
        server.should_exit = True
        await serving
    assert [p for p, _ in rx.calls] == ["/ok/0"]
    history = await attempts(pool)
    assert [ok for *_, ok in history] == [False] * (len(history) - 1) + [True]
    assert [a for _, _, a, _ in history] == list(range(1, len(history) + 1))
    assert (await outbox(pool))[0][1] == "sent"


async def _ok(pool: asyncpg.Pool) -> bool:
    return await pool.fetchval("SELECT count(*) FROM notification_sends WHERE ok") >= 1

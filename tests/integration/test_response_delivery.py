"""Who is told when, end to end (CONTRACT §8 v2, §9): the lifecycle on an injected clock writes
notifications for v2 responders in the alarm's transaction, the notifier delivers them to real
local receivers (uvicorn on 127.0.0.1) through the channel adapters: a smoke alarm reaches its unit
contact once, repeats never send again, an upgrade climbs to the grid worker and updates whoever
was told, an immediate alarm reaches unit contacts and grid workers at once, nobody on duty goes to
the duty officer, a storm of 50 alarms is at most 2 messages, a group robot gets one message per
(alarm, level), a refused channel falls back to the next, a responder's ack holds the climb, and a
v1 unit contact with a webhook still gets its notification."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import uvicorn
from prometheus_client import CollectorRegistry

from alerting.lifecycle import AlarmLifecycle
from alerting.metrics import AlarmMetrics
from alerting.model import AlarmType, Decision, Response, Severity
from alerting.response.channels.webhook import signature
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
T0 = 1_795_341_600_000  # a Sunday, 10:00 in Shanghai
LOCAL = OutboundPolicy.parse(["127.0.0.1"])
REGION = "江西省/赣州市/章贡区/南外街道"
SECRET = "hook-secret"


class Receiver:
    """Webhooks: /ok/* 200, /gone/* 404. Robots: /robot/* answer `{"errcode": 0}`."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], dict[str, str]]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.calls.append((path, json.loads(body), headers | {"_raw": body.decode()}))
        status, answer = 200, b"ok"
        if path.startswith("/gone"):
            status = 404
        elif path.startswith("/robot"):
            answer = b'{"errcode": 0, "errmsg": "ok"}'
        headers_out = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers_out})
        await send({"type": "http.response.body", "body": answer})

    def paths(self) -> list[str]:
        return sorted(p for p, _, _ in self.calls)


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
    server.should_exit = True
    await task


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(database_url, min_size=1, max_size=8)
    async with p.acquire() as conn:
        await migrate(conn, DEFAULT_MIGRATIONS_DIR)
    yield p
    await p.close()


def fleet() -> Fleet:
    f = Fleet()
    f.set_unit("U1", region=REGION)
    for i in range(60):
        f.upsert(f"D{i}", Kind.smoke, unit_id="U1")
        f.upsert(f"E{i}", Kind.electrical, unit_id="U1")
    return f


@contextlib.asynccontextmanager
async def running(pool: asyncpg.Pool, clock: Clock, **options: Any) -> AsyncIterator[AlarmLifecycle]:
    metrics = AlarmMetrics(CollectorRegistry())
    options = {"attempts": 3, "backoff_s": 0.02, "poll_s": 0.05, **options}
    notifier = Notifier(pool, clock, policy=LOCAL, metrics=metrics, public_url="https://mx.example.cn", **options)
    lifecycle = AlarmLifecycle(pool, AlarmHub(db_replay(pool)), fleet(), clock, notifier=notifier, metrics=metrics)
    worker = asyncio.create_task(notifier.run())
    try:
        yield lifecycle
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker


async def channel(pool: asyncpg.Pool, name: str, url: str, kind: str = "webhook") -> None:
    config = {"url": url, "secret": SECRET} if kind == "webhook" else {"url": url}
    await pool.execute("INSERT INTO channels (name, type, config) VALUES ($1, $2, $3::jsonb)", name, kind,
                       json.dumps(config))


async def responder(pool: asyncpg.Pool, rid: str, role: str, channels: list[str], *, units: list[str] | None = None,
                    regions: list[str] | None = None, on_duty: list[dict[str, Any]] | None = None) -> None:
    await pool.execute(
        """INSERT INTO responders (responder_id, name, role, channels, unit_ids, regions, on_duty, phone)
           VALUES ($1, $1, $2, $3, $4, $5, $6::jsonb, '+8613800000000')""",
        rid, role, channels, units or [], regions or [], None if on_duty is None else json.dumps(on_duty))


def decision(ts: int, device: str, type: AlarmType = AlarmType.smoke, response: Response = Response.verify,
             rule: str = "smoke.single") -> Decision:
    return Decision("raise", f"device:{device}", type, Severity.major, response, rule, ts, [device], None,
                    [{"device_id": device, "ts_ms": ts}])


async def sent(pool: asyncpg.Pool, n: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM notifications WHERE state = 'sent'") >= n


async def people(pool: asyncpg.Pool, url: str) -> None:
    """A unit contact of U1, a grid worker of the street, a duty officer of the city."""
    await channel(pool, "uc-hook", f"{url}/ok/uc")
    await channel(pool, "grid-hook", f"{url}/ok/grid")
    await channel(pool, "duty-hook", f"{url}/ok/duty")
    await responder(pool, "uc", "unit_contact", ["uc-hook"], units=["U1"])
    await responder(pool, "grid", "grid_worker", ["grid-hook"], regions=[REGION])
    await responder(pool, "duty", "duty_officer", ["duty-hook"], regions=["江西省/赣州市"])


async def test_a_smoke_alarm_tells_its_unit_contact_once_and_an_upgrade_climbs(
    pool: asyncpg.Pool, receiver: tuple[Receiver, str]
) -> None:
    rx, url = receiver
    await people(pool, url)
    clock = Clock(T0)
    async with running(pool, clock) as lc:
        await lc.handle([decision(T0, "D1")])
        await wait_for(lambda: sent(pool, 1))
        for i in range(1, 4):  # repeats fold: never a new message
            await lc.handle([decision(T0 + i * 1000, "D1")])
        await lc.flush(T0 + 5000)
        await asyncio.sleep(0.3)
        assert rx.paths() == ["/ok/uc"]
        _, body, headers = rx.calls[0]
        assert body["level"] == 0 and body["alarm"]["type"] == "smoke" and body["contact"] == "uc"
        ts = headers["x-miaoxiang-timestamp"]
        assert headers["x-miaoxiang-signature"] == signature(SECRET, ts, headers["_raw"].encode())
        # unacknowledged for 60 s: immediate, at once to level 1; the unit contact gets one update
        clock.now = T0 + 60_000
        await lc.tick(clock.now)
        await wait_for(lambda: sent(pool, 3))
        await asyncio.sleep(0.2)
    assert rx.paths() == ["/ok/grid", "/ok/uc", "/ok/uc"]
    rows = await pool.fetch("SELECT responder_id, level, reason, state FROM notifications ORDER BY id")
    assert [tuple(r) for r in rows] == [("uc", 0, "level", "sent"), ("uc", 1, "upgrade", "sent"),
                                        ("grid", 1, "level", "sent")]
    # each of the unit contact's two messages carries its own link, and both stay live
    links = await pool.fetchval("SELECT count(*) FROM response_tokens WHERE responder_id = 'uc' AND revoked_at IS NULL")
    assert links == 2


async def test_immediate_tells_unit_contacts_and_grid_workers_at_once_and_nobody_on_duty_goes_to_the_duty_officer(
    pool: asyncpg.Pool, receiver: tuple[Receiver, str]
) -> None:
    rx, url = receiver
    await people(pool, url)
    # the grid worker is on duty on Mondays only: on this Sunday the duty officer stands in
    await pool.execute("""UPDATE responders SET on_duty = '[{"weekday": 1, "start": "00:00", "end": "23:59"}]'
                          WHERE responder_id = 'grid'""")
    assert datetime.fromtimestamp(T0 / 1000, UTC).isoweekday() == 7
    clock = Clock(T0)
    async with running(pool, clock) as lc:
        await lc.handle([decision(T0, "D1", response=Response.immediate, rule="smoke_temp_57c")])
        await wait_for(lambda: sent(pool, 2))
        await asyncio.sleep(0.2)
    assert await pool.fetchval("SELECT escalation_level FROM alarms") == 1
    assert rx.paths() == ["/ok/duty", "/ok/uc"]
    rows = await pool.fetch("SELECT responder_id, level, reason FROM notifications ORDER BY level, responder_id")
    assert [tuple(r) for r in rows] == [("uc", 0, "level"), ("duty", 1, "duty_officer")]


async def test_fifty_alarms_for_one_responder_within_ten_seconds_are_at_most_two_messages(
    pool: asyncpg.Pool, receiver: tuple[Receiver, str]
) -> None:
    rx, url = receiver
    await channel(pool, "uc-hook", f"{url}/ok/uc")
    await responder(pool, "uc", "unit_contact", ["uc-hook"], units=["U1"])
    clock = Clock(T0)
    async with running(pool, clock, digest_s=2.0) as lc:
        for i in range(50):
            await lc.handle([decision(T0 + i, f"E{i}", AlarmType.residual_current, rule="residual_current_300ma")])
        assert await pool.fetchval("SELECT count(*) FROM notifications") == 50
        await wait_for(lambda: sent(pool, 50), timeout=15)
        await asyncio.sleep(0.5)
    assert 1 <= len(rx.calls) <= 2
    carriers = await pool.fetchval("SELECT count(*) FROM notifications WHERE digest_of IS NULL")
    assert carriers == len(rx.calls)
    sends = await pool.fetchval("SELECT count(*) FROM notification_sends")
    assert sends == len(rx.calls)


async def test_a_group_robot_gets_one_message_per_alarm_and_level_and_a_refused_channel_falls_back(
    pool: asyncpg.Pool, receiver: tuple[Receiver, str]
) -> None:
    rx, url = receiver
    await channel(pool, "robot", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k1", "wecom_robot")
    await pool.execute("UPDATE channels SET endpoint = $1 WHERE name = 'robot'", f"{url}/robot")
    await channel(pool, "gone-hook", f"{url}/gone/x")
    await channel(pool, "ok-hook", f"{url}/ok/fallback")
    for rid in ("a", "b", "c"):
        await responder(pool, rid, "unit_contact", ["robot"], units=["U1"])
    await responder(pool, "d", "unit_contact", ["gone-hook", "ok-hook"], units=["U1"])
    clock = Clock(T0)
    async with running(pool, clock) as lc:
        await lc.handle([decision(T0, "D1")])
        await wait_for(lambda: sent(pool, 5))
        await asyncio.sleep(0.3)
    robot_path = "/robot/cgi-bin/webhook/send"  # the endpoint replaces the provider's address
    assert rx.paths() == ["/gone/x", "/ok/fallback", robot_path]
    robot = next(b for p, b, _ in rx.calls if p == robot_path)
    assert robot["msgtype"] == "text" and "烟感报警" in robot["text"]["content"]
    assert "https://mx.example.cn/r/" in robot["text"]["content"]
    rows = await pool.fetch("""SELECT coalesce(responder_id, '#' || group_channel) AS who, state, channel
                                 FROM notifications ORDER BY 1""")
    assert [tuple(r) for r in rows] == [("#robot", "sent", "robot"), ("a", "sent", "robot"), ("b", "sent", "robot"),
                                        ("c", "sent", "robot"), ("d", "sent", "ok-hook")]
    attempts = await pool.fetch("SELECT channel, ok FROM notification_sends ORDER BY id")
    assert sorted(tuple(a) for a in attempts) == [("gone-hook", False), ("ok-hook", True), ("robot", True)]


async def test_a_responder_ack_holds_the_climb(pool: asyncpg.Pool, receiver: tuple[Receiver, str]) -> None:
    _, url = receiver
    await people(pool, url)
    clock = Clock(T0)
    async with running(pool, clock) as lc:
        await lc.handle([decision(T0, "D1", response=Response.immediate, rule="smoke_temp_57c")])
        hold = datetime.fromtimestamp(T0 / 1000, UTC) + timedelta(seconds=300)
        await pool.execute("UPDATE alarms SET held_until = $1", hold)
        clock.now = T0 + 120_000
        await lc.tick(clock.now)
        assert await pool.fetchval("SELECT escalation_level FROM alarms") == 1
        clock.now = T0 + 300_000  # the hold is over: the climb resumes
        await lc.tick(clock.now)
        assert await pool.fetchval("SELECT escalation_level FROM alarms") == 2


async def test_a_v1_unit_contact_with_a_webhook_still_gets_its_notification(
    pool: asyncpg.Pool, receiver: tuple[Receiver, str]
) -> None:
    rx, url = receiver
    contacts = [{"name": "李经理", "phone": "+8613800000009", "webhook": f"{url}/ok/v1-unit"}]
    await pool.execute("INSERT INTO units (unit_id, name, region, contacts) VALUES ('U1', '某某市场', $1, $2::jsonb)",
                       REGION, json.dumps(contacts, ensure_ascii=False))
    clock = Clock(T0)
    async with running(pool, clock) as lc:
        await lc.handle([decision(T0, "D1")])
        await wait_for(lambda: sent(pool, 1))
    [(path, body, _)] = rx.calls
    assert path == "/ok/v1-unit" and body["contact"] == "李经理" and body["level_name"] == "unit_contact"
    # the contact removed from the unit: its responder is retired
    await pool.execute("UPDATE units SET contacts = '[]' WHERE unit_id = 'U1'")
    assert await pool.fetchval("SELECT deleted_at IS NOT NULL FROM responders WHERE origin = 'v1_unit_contact'")

"""Huawei IoTDA and Alibaba Cloud IoT AMQP 1.0 subscriptions on a real broker (a second RabbitMQ
node the test starts, see rabbitkit) and the real service: sources created, shown without secrets
and deleted through the API, consumers logging in with the providers' signed credentials; a
10,000-message backlog stored exactly once; a kill -9 of the service process mid-backlog and a
broker restart lose nothing and duplicate nothing; an undecodable message is dead-lettered and
accepted; one that cannot be committed (database down) is released, redelivered and stored after."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from devices.kinds import Event, Kind
from devices.reading import Reading
from ingest.codecs.profiles import ProfileRegistry
from miaoxiang.settings import Settings
from simulators.amqp_sink import AmqpMessage, send
from simulators.envelopes import aliyun_message, iotda_message
from tests.integration.faultkit import ADMIN_TOKEN, db_outage, service, service_env
from tests.integration.rabbitkit import RabbitNode, aliyun_config, iotda_config, rabbit_node
from tests.service import RunningService, running_service, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PROFILES = ProfileRegistry.load()
T0 = 1_795_341_600_000  # 2026-11-22T10:00:00Z, whole seconds (IoTDA's times are)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[RabbitNode]:
    with rabbit_node(tmp_path / "rabbit") as n:
        yield n


def imei(d: int) -> str:
    return f"86812030{d:07d}"


def reading(d: int, seq: int) -> Reading:
    ts = T0 + seq * 1000
    return Reading(imei(d), Kind.smoke, Event.report, ts, ts, metrics={"battery_pct": 80, "rsrp_dbm": -90.0 - d % 10})


def iotda_messages(devices: int, per_device: int, first: int = 0) -> list[AmqpMessage]:
    profile = PROFILES.get("iotda-smoke")
    assert profile is not None
    return [AmqpMessage(iotda_message(reading(d, seq), profile))
            for seq in range(first, first + per_device) for d in range(devices)]


def aliyun_messages(devices: int, per_device: int) -> list[AmqpMessage]:
    """Of devices 1000.. (other detectors than `iotda_messages`'s: the same reading is one reading)."""
    profile = PROFILES.get("aliyun-smoke")
    assert profile is not None
    return [AmqpMessage(*aliyun_message(reading(1000 + d, seq), profile))
            for seq in range(per_device) for d in range(devices)]


async def publish(node: RabbitNode, queue: str, messages: list[AmqpMessage]) -> None:
    await asyncio.to_thread(send, node.publisher_url(queue), messages)


async def stored(db_url: str) -> tuple[int, int]:
    """(readings stored, distinct (device, device time) among them)."""
    conn = await asyncpg.connect(db_url)
    try:
        row = await conn.fetchrow("SELECT count(*) AS n, count(DISTINCT (device_id, ts)) AS d FROM readings")
        return int(row["n"]), int(row["d"])
    finally:
        await conn.close()


def metric(text: str, name: str, source: str) -> float | None:
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if m and f'source="{source}"' in m.group(1):
            return float(m.group(2))
    return None


async def create(http: httpx.AsyncClient, body: dict[str, object], headers: dict[str, str]) -> None:
    r = await http.post("/api/v1/push-sources", json=body, headers=headers)
    assert r.status_code == 201, r.text


def iotda_source(name: str, node: RabbitNode, queue: str, **extra: object) -> dict[str, object]:
    return {"name": name, "platform": "iotda_amqp", "config": iotda_config(node, queue, **extra)}


async def state(svc: RunningService, name: str) -> dict[str, object] | None:
    shown = (await svc.http.get(f"/api/v1/push-sources/{name}", headers=svc.auth())).json()
    return shown.get("state")  # type: ignore[no-any-return]


async def test_amqp_sources_are_created_shown_without_secrets_consumed_and_deleted(
    settings: Settings, node: RabbitNode, database_url: str
) -> None:
    for q in ("hw", "ali", "bad"):
        node.declare_queue(q)
    async with running_service(settings) as svc:
        await create(svc.http, iotda_source("hw", node, "hw"), svc.auth())
        await create(svc.http, {"name": "ali", "platform": "aliyun_amqp", "config": aliyun_config(node, "ali")},
                     svc.auth())
        await create(svc.http, iotda_source("badcode", node, "bad", access_code="not-the-code"), svc.auth())
        hw = (await svc.http.get("/api/v1/push-sources/hw", headers=svc.auth())).json()
        assert hw["platform"] == "iotda_amqp" and "access_code" not in hw["config"] and hw["config"]["queue"]
        listed = (await svc.http.get("/api/v1/push-sources", headers=svc.auth())).text
        assert "mx-access-code" not in listed and "mx-access-secret" not in listed

        async def connected(name: str) -> bool:
            s = await state(svc, name)
            return s is not None and bool(s["connected"])

        await wait_for(lambda: connected("hw"), timeout=30)
        await wait_for(lambda: connected("ali"), timeout=30)
        await publish(node, "hw", iotda_messages(3, 2))
        await publish(node, "ali", aliyun_messages(4, 2))
        await wait_for(lambda: _at_least(database_url, 14), timeout=30)

        async def refused() -> bool:  # the signed login is refused: not connected, and says why
            bad = await state(svc, "badcode")
            return bad is not None and not bad["connected"] and "unauthorized" in str(bad["last_error"])

        await wait_for(refused, timeout=30)
        assert any(u.startswith("accessKey=mx-ak|timestamp=") for u in node.auth.refused)

        base = iotda_source("x", node, "hw")
        config: dict[str, object] = base["config"]  # type: ignore[assignment]
        refused = [
            ({**base, "config": {k: v for k, v in config.items() if k != "access_code"}}, "access_code"),
            ({**base, "config": {**config, "port": 70000}}, "port"),
            ({**base, "config": {**config, "colour": "red"}}, "colour"),
            ({**base, "config": {**config, "max_unacked": 0}}, "max_unacked"),
            ({"name": "y", "platform": "aliyun_amqp", "config": {**aliyun_config(node, "q"), "consumer_group_id": ""}},
             "consumer_group_id"),
        ]
        for body, says in refused:
            r = await svc.http.post("/api/v1/push-sources", json=body, headers=svc.auth())
            assert r.status_code == 422 and says in r.text, (body, r.text)

        text = (await svc.http.get("/metrics")).text
        assert metric(text, "mx_subscription_messages_total", "hw") == 6
        assert metric(text, "mx_subscription_messages_total", "ali") == 8
        assert (await svc.http.delete("/api/v1/push-sources/ali", headers=svc.auth())).status_code == 204
        assert metric((await svc.http.get("/metrics")).text, "mx_subscription_connected", "ali") is None
    assert await stored(database_url) == (14, 14)
    assert node.depth("hw") == (0, 0) and node.depth("ali") == (0, 0)


async def test_a_backlog_of_10000_messages_is_stored_exactly_once(
    settings: Settings, node: RabbitNode, database_url: str
) -> None:
    node.declare_queue("backlog")
    await publish(node, "backlog", iotda_messages(50, 200))
    assert node.depth("backlog") == (10_000, 0)
    async with running_service(settings) as svc:
        await create(svc.http, iotda_source("hw", node, "backlog"), svc.auth())
        await wait_for(lambda: _at_least(database_url, 10_000), timeout=120, interval=0.5)
        await wait_for(lambda: _acked(svc.http, "hw", 10_000), timeout=30)
        await asyncio.sleep(1)  # nothing more arrives
        assert await stored(database_url) == (10_000, 10_000)
        text = (await svc.http.get("/metrics")).text
        assert metric(text, "mx_subscription_redelivered_total", "hw") == 0
    assert node.depth("backlog") == (0, 0)


async def test_kill_9_of_the_service_mid_backlog_loses_and_duplicates_nothing(
    node: RabbitNode, database_url: str, mqtt_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    node.declare_queue("kill")
    await publish(node, "kill", iotda_messages(50, 200))
    env = service_env(database_url=database_url, mqtt_url=mqtt_url, topic_prefix=topic_prefix,
                      client_id=f"amqpkill-{uuid.uuid4().hex[:8]}")
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with service(env, tmp_path / "svc.log") as svc:
        svc.start()
        async with httpx.AsyncClient(base_url=svc.base, timeout=10) as http:
            await create(http, iotda_source("hw", node, "kill", max_unacked=200), headers)
        await wait_for(lambda: _at_least(database_url, 1000), timeout=60, interval=0.02)
        svc.kill9()
        before = await stored(database_url)
        assert before[0] < 10_000, "the backlog ended before the kill"
        ready, unacked = node.depth("kill")
        assert ready + unacked > 0
        svc.start()  # the source's row is still there: its consumer starts with the service
        await wait_for(lambda: _at_least(database_url, 10_000), timeout=120, interval=0.5)
        await asyncio.sleep(2)  # late redeliveries would show now
        after = await stored(database_url)
        assert "background task failed" not in svc.log()
    assert before[0] == before[1], "no duplicate before the kill"
    assert after == (10_000, 10_000), "every message stored once across the kill"
    assert node.depth("kill") == (0, 0)


@pytest.mark.parametrize("how", ["graceful", "kill9"])
async def test_a_broker_restart_mid_stream_loses_and_duplicates_nothing(
    how: str, settings: Settings, node: RabbitNode, database_url: str
) -> None:
    """Stopped cleanly, or killed (-9) and started again, while the consumer has messages in hand."""
    node.declare_queue("restart")
    await publish(node, "restart", iotda_messages(40, 250))  # 10,000: a graceful stop takes seconds
    async with running_service(settings) as svc:
        await create(svc.http, iotda_source("hw", node, "restart", max_unacked=10), svc.auth())
        await wait_for(lambda: _at_least(database_url, 200), timeout=60, interval=0.02)
        await asyncio.to_thread(node.stop if how == "graceful" else node.kill9)
        assert (await stored(database_url))[0] < 10_000, "the stream ended before the broker stopped"
        await wait_for(lambda: _disconnected(svc.http, "hw"), timeout=30)
        await asyncio.to_thread(node.start)
        await publish(node, "restart", iotda_messages(40, 50, first=250))  # 2,000 more
        await wait_for(lambda: _at_least(database_url, 12_000), timeout=180, interval=0.5)
        await asyncio.sleep(2)
        assert await stored(database_url) == (12_000, 12_000)
        s = await state(svc, "hw")
        assert s is not None and s["connected"]
    assert node.depth("restart") == (0, 0)


async def test_an_undecodable_message_is_dead_lettered_and_accepted(
    settings: Settings, node: RabbitNode, database_url: str
) -> None:
    node.declare_queue("bad")
    await publish(node, "bad", [AmqpMessage(b"\x00not an IoTDA message"), *iotda_messages(1, 1)])
    async with running_service(settings) as svc:
        await create(svc.http, iotda_source("hw", node, "bad"), svc.auth())
        await wait_for(lambda: _acked(svc.http, "hw", 2), timeout=30)
        assert await stored(database_url) == (1, 1)
    assert node.depth("bad") == (0, 0), "both accepted"
    conn = await asyncpg.connect(database_url)
    try:
        letters = await conn.fetch("SELECT transport, source, raw FROM dead_letters")
    finally:
        await conn.close()
    assert [(r["transport"], r["source"], bytes(r["raw"])) for r in letters] == [
        ("mq:iotda_amqp", "mq:hw", b"\x00not an IoTDA message")
    ]


async def test_a_message_that_cannot_be_committed_is_released_redelivered_and_stored_after(
    settings: Settings, node: RabbitNode, database_url: str, pg_admin_url: str
) -> None:
    node.declare_queue("dbdown")
    async with running_service(settings) as svc:
        await create(svc.http, iotda_source("hw", node, "dbdown", commit_timeout_s=1), svc.auth())
        await wait_for(lambda: _connected(svc.http, "hw"), timeout=30)
        async with db_outage("not_accepting", pg_admin_url, database_url) as outage:
            await outage.start()
            await publish(node, "dbdown", iotda_messages(20, 10))  # 200
            await wait_for(lambda: _redelivered(svc.http, "hw"), timeout=30, interval=0.2)
            assert metric((await svc.http.get("/metrics")).text, "mx_subscription_messages_total", "hw") == 0
            ready, unacked = node.depth("dbdown")
            assert ready + unacked == 200, "every message still at the broker"
        await wait_for(lambda: _at_least(database_url, 200), timeout=90, interval=0.5)
        await wait_for(lambda: _acked(svc.http, "hw", 200), timeout=60)
        await asyncio.sleep(1)
        assert await stored(database_url) == (200, 200)
    assert node.depth("dbdown") == (0, 0)


async def _at_least(database_url: str, n: int) -> bool:
    return (await stored(database_url))[0] >= n


async def _metric(http: httpx.AsyncClient, name: str, source: str) -> float | None:
    return metric((await http.get("/metrics")).text, name, source)


async def _acked(http: httpx.AsyncClient, source: str, n: int) -> bool:
    return (await _metric(http, "mx_subscription_messages_total", source) or 0) >= n


async def _redelivered(http: httpx.AsyncClient, source: str) -> bool:
    return (await _metric(http, "mx_subscription_redelivered_total", source) or 0) > 0


async def _disconnected(http: httpx.AsyncClient, source: str) -> bool:
    return await _metric(http, "mx_subscription_connected", source) == 0


async def _connected(http: httpx.AsyncClient, source: str) -> bool:
    return await _metric(http, "mx_subscription_connected", source) == 1

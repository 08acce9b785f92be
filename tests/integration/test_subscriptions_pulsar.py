"""CTWing MQ (Pulsar) subscriptions on a real broker (pulsar-lite on loopback) and the real service:
created, shown (secrets never), deleted through the API; a 10,000-message backlog stored exactly
once; a broker restart mid-stream loses and duplicates nothing; an undecodable message is
dead-lettered and acknowledged; one that cannot be committed (database down) is redelivered and
stored after recovery."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from devices.kinds import Event
from devices.reading import Reading
from ingest.subscriptions import supervisor
from miaoxiang.settings import Settings
from simulators.fleet import build_fleet
from simulators.publish import ByUplink
from simulators.scenarios import Step
from simulators.session import configure_pulsar_source, pulsar_publisher
from tests.integration.faultkit import db_outage
from tests.integration.pulsarkit import (
    T0,
    PulsarLite,
    envelope,
    messages,
    publish,
    pulsar_lite,
    source_body,
    stored,
    subscribe_now,
)
from tests.service import RunningService, running_service, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PulsarLite]:
    with pulsar_lite(tmp_path / "pulsar") as b:
        yield b


def metric(text: str, name: str, source: str) -> float | None:
    """One `{source=...}` sample of /metrics (None when absent)."""
    for line in text.splitlines():
        m = re.fullmatch(rf'{name}\{{(.*)\}} (\S+)', line)
        if m and f'source="{source}"' in m.group(1):
            return float(m.group(2))
    return None


async def metrics(svc: RunningService) -> str:
    return (await svc.http.get("/metrics")).text


async def create(svc: RunningService, body: dict[str, object]) -> None:
    r = await svc.http.post("/api/v1/push-sources", json=body, headers=svc.auth())
    assert r.status_code == 201, r.text


async def test_a_ctwing_mq_source_is_created_shown_without_secrets_and_deleted(
    settings: Settings, broker: PulsarLite
) -> None:
    async with running_service(settings) as svc:
        body = source_body("ctmq", broker, "api", token="jwt-s3cret")
        await create(svc, body)
        shown = (await svc.http.get("/api/v1/push-sources/ctmq", headers=svc.auth())).json()
        assert shown["platform"] == "ctwing_mq" and shown["secrets_set"] == ["token"]
        assert "token" not in shown["config"] and shown["config"]["topic"] == "api"
        assert "jwt-s3cret" not in (await svc.http.get("/api/v1/push-sources", headers=svc.auth())).text

        async def connected() -> bool:
            state = (await svc.http.get("/api/v1/push-sources/ctmq", headers=svc.auth())).json()["state"]
            return state is not None and state["connected"]

        await wait_for(connected, timeout=20)
        assert metric(await metrics(svc), "mx_subscription_connected", "ctmq") == 1
        listed = (await svc.http.get("/api/v1/push-sources", headers=svc.auth())).json()["items"]
        assert [s["name"] for s in listed] == ["ctmq"] and listed[0]["state"]["messages"] == 0

        plain = source_body("ctmq", broker, "api")
        config: dict[str, object] = plain["config"]  # type: ignore[assignment]
        refused = [
            ({**plain, "config": {**config, "topic": ""}}, "config.topic"),
            ({**plain, "config": {**config, "service_url": "pulsar+ssl://aep:16651"}}, "config.token"),
            ({**plain, "config": {**config, "colour": "red"}}, "colour"),
            ({**plain, "token": "t"}, "config"),
            ({"name": "h", "platform": "ctwing", "token": "t", "config": {"topic": "x"}}, "config"),
            ({"name": "h", "platform": "ctwing_mq"}, "config"),
            ({**plain, "config": {**config, "token": "jwt\x00"}}, "not storable"),  # PostgreSQL's jsonb refuses NUL
        ]
        for bad, says in refused:
            r = await svc.http.post("/api/v1/push-sources", json=bad, headers=svc.auth())
            assert r.status_code == 422 and says in r.text, (bad, r.text)

        assert (await svc.http.delete("/api/v1/push-sources/ctmq", headers=svc.auth())).status_code == 204
        assert metric(await metrics(svc), "mx_subscription_connected", "ctmq") is None  # its consumer is gone
        assert (await svc.http.get("/api/v1/push-sources/ctmq", headers=svc.auth())).status_code == 404
        assert (await svc.http.delete("/api/v1/push-sources/ctmq", headers=svc.auth())).status_code == 404


async def test_a_source_written_by_another_instance_is_followed(
    settings: Settings, broker: PulsarLite, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows created, changed and deleted behind this process's back (another instance's API) are
    followed at the next reconciliation."""
    monkeypatch.setattr(supervisor, "RECONCILE_S", 0.3)
    config = source_body("ctmq", broker, "other")["config"]
    async with running_service(settings) as svc:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("INSERT INTO push_sources (name, platform, config) VALUES ('ctmq', 'ctwing_mq', $1)",
                               json.dumps(config))
            await wait_for(lambda: _connected(svc), timeout=20)
            subscribe_now(broker.url, "moved", "mx-ctmq")
            await conn.execute("UPDATE push_sources SET config = config || $1::jsonb WHERE name = 'ctmq'",
                               json.dumps({"topic": "moved"}))
            await asyncio.to_thread(publish, broker.url, "moved", [envelope(1, 1)])
            await wait_for(lambda: _at_least(database_url, 1), timeout=20)  # restarted on the new topic
            await conn.execute("DELETE FROM push_sources WHERE name = 'ctmq'")
            await wait_for(lambda: _gone(svc), timeout=20)
        finally:
            await conn.close()


async def test_a_backlog_of_10000_messages_is_stored_exactly_once(
    settings: Settings, broker: PulsarLite, database_url: str
) -> None:
    subscribe_now(broker.url, "backlog", "mx-ctmq")
    await asyncio.to_thread(publish, broker.url, "backlog", messages(50, 200))
    async with running_service(settings) as svc:
        await create(svc, source_body("ctmq", broker, "backlog"))
        await wait_for(lambda: _at_least(database_url, 10_000), timeout=120, interval=0.5)
        await wait_for(lambda: _acked(svc, 10_000), timeout=20)
        await asyncio.sleep(1)  # nothing more arrives
        assert await stored(database_url) == (10_000, 10_000)
        text = await metrics(svc)
        # Pulsar delivers at least once (an acknowledgement still grouped in the client when its
        # connection blinks is redelivered): what is stored is exact, what is acknowledged may exceed it
        assert 10_000 <= (metric(text, "mx_subscription_messages_total", "ctmq") or 0) < 10_100
        assert metric(text, "mx_subscription_redelivered_total", "ctmq") == 0  # no commit failed


async def test_a_broker_restart_mid_stream_loses_and_duplicates_nothing(
    settings: Settings, broker: PulsarLite, database_url: str
) -> None:
    subscribe_now(broker.url, "restart", "mx-ctmq")
    await asyncio.to_thread(publish, broker.url, "restart", messages(40, 100))  # 4,000
    async with running_service(settings) as svc:
        await create(svc, source_body("ctmq", broker, "restart", max_unacked=50))
        await wait_for(lambda: _at_least(database_url, 500), timeout=60, interval=0.05)
        await asyncio.to_thread(broker.restart)
        assert (await stored(database_url))[0] < 4000, "the stream ended before the broker restarted"
        later = [envelope(d, seq) for seq in range(100, 150) for d in range(40)]  # 2,000 more
        await asyncio.to_thread(publish, broker.url, "restart", later)
        await wait_for(lambda: _at_least(database_url, 6000), timeout=120, interval=0.5)
        await asyncio.sleep(2)
        assert await stored(database_url) == (6000, 6000)
        await wait_for(lambda: _connected(svc), timeout=20)


async def test_an_undecodable_message_is_dead_lettered_and_acknowledged(
    settings: Settings, broker: PulsarLite, database_url: str
) -> None:
    subscribe_now(broker.url, "bad", "mx-ctmq")
    await asyncio.to_thread(publish, broker.url, "bad", [b"\x00not a CTWing push", envelope(1, 1)])
    async with running_service(settings) as svc:
        await create(svc, source_body("ctmq", broker, "bad"))
        await wait_for(lambda: _acked(svc, 2), timeout=30)
        assert await stored(database_url) == (1, 1)
    async with running_service(settings) as svc:  # the same subscription again: nothing comes back
        await wait_for(lambda: _connected(svc), timeout=20)
        await asyncio.sleep(2)
        assert metric(await metrics(svc), "mx_subscription_messages_total", "ctmq") == 0
    conn = await asyncpg.connect(database_url)
    try:
        letters = await conn.fetch("SELECT transport, source, reason, raw FROM dead_letters")
    finally:
        await conn.close()
    assert [(r["transport"], r["source"], bytes(r["raw"])) for r in letters] == [
        ("mq:ctwing_mq", "mq:ctmq", b"\x00not a CTWing push")
    ]
    assert await stored(database_url) == (1, 1)


async def test_a_message_that_cannot_be_committed_is_redelivered_and_stored_after_recovery(
    settings: Settings, broker: PulsarLite, database_url: str, pg_admin_url: str
) -> None:
    subscribe_now(broker.url, "dbdown", "mx-ctmq")
    async with running_service(settings) as svc:
        await create(svc, source_body("ctmq", broker, "dbdown", commit_timeout_s=1))
        await wait_for(lambda: _connected(svc), timeout=20)
        async with db_outage("not_accepting", pg_admin_url, database_url) as outage:
            await outage.start()
            await asyncio.to_thread(publish, broker.url, "dbdown", messages(20, 10))  # 200
            await wait_for(lambda: _redelivered(svc), timeout=30, interval=0.2)
            assert metric(await metrics(svc), "mx_subscription_messages_total", "ctmq") == 0
        await wait_for(lambda: _at_least(database_url, 200), timeout=90, interval=0.5)
        await wait_for(lambda: _acked(svc, 200), timeout=60)
        await asyncio.sleep(1)
        assert await stored(database_url) == (200, 200)


async def _at_least(database_url: str, n: int) -> bool:
    return (await stored(database_url))[0] >= n


async def _acked(svc: RunningService, n: int) -> bool:
    return (metric(await metrics(svc), "mx_subscription_messages_total", "ctmq") or 0) >= n


async def _redelivered(svc: RunningService) -> bool:
    return (metric(await metrics(svc), "mx_subscription_redelivered_total", "ctmq") or 0) > 0


async def _gone(svc: RunningService) -> bool:
    return metric(await metrics(svc), "mx_subscription_connected", "ctmq") is None


async def _connected(svc: RunningService) -> bool:
    return metric(await metrics(svc), "mx_subscription_connected", "ctmq") == 1


async def test_the_simulator_publishes_ctwing_devices_through_the_pulsar_topic(
    settings: Settings, broker: PulsarLite, database_url: str
) -> None:
    """`miaoxiang simulate --pulsar-url`: a ctwing_mq source is configured and subscribed first,
    then CTWing devices' steps go to its topic, other devices' to their own sink."""
    fleet = build_fleet(300, 7)
    ctwing = [d for d in fleet.devices if d.uplink == "ctwing"][:20]
    other = next(d for d in fleet.devices if d.uplink == "generic")
    steps = [Step(T0, Reading(d.device_id, d.kind, Event.report, T0 + i * 1000, T0, seq=i,
                              metrics={"battery_pct": 90}), "tel", "http") for d in ctwing for i in range(5)]
    elsewhere: list[Step] = []

    class Elsewhere:
        async def send(self, step: Step) -> int:
            elsewhere.append(step)
            return 1

        async def flush(self) -> int:
            return 0

    async with running_service(settings) as svc:
        async with httpx.AsyncClient(base_url=svc.base_url, headers=svc.auth(), timeout=10) as http:
            topic_name = await configure_pulsar_source(http, "t1", broker.url)
        async with pulsar_publisher(broker.url, topic_name) as pulsar_sink:
            sink = ByUplink(fleet, Elsewhere(), {"ctwing": pulsar_sink})
            for step in [*steps, Step(T0, Reading(other.device_id, other.kind, Event.report, T0, T0), "tel", "http")]:
                await sink.send(step)
            await sink.flush()
        await wait_for(lambda: _at_least(database_url, len(steps)), timeout=30, interval=0.2)
        await asyncio.sleep(1)
    assert await stored(database_url) == (len(steps), len(steps))
    assert [s.reading.device_id for s in elsewhere] == [other.device_id]

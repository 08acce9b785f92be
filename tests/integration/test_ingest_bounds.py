"""Bounds of the MQTT uplink through the real service: auto-registration of unknown devices is
rate-limited per origin and capped in all, an oversized message is one dead letter (acknowledged,
nothing stored), and a topic not of the contract's shape is a dead letter, never a silent drop."""

from __future__ import annotations

import json
from typing import Any

import aiomqtt
import asyncpg
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from miaoxiang.settings import Settings
from tests.service import running_service, wait_for

pytestmark = pytest.mark.integration
T0 = 1_795_341_600_000


def _broker(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("mqtt://").split(":")
    return host, int(port)


def _report(device: str, seq: int, **extra: Any) -> dict[str, Any]:
    return {"device_id": device, "kind": "smoke", "ts": T0 + seq, "seq": seq, "event": "heartbeat",
            "data": {"battery_pct": 90, **extra}}


async def _publish(settings: Settings, *messages: tuple[str, bytes]) -> None:
    host, port = _broker(settings.mqtt_url or "")
    async with aiomqtt.Client(host, port) as pub:
        for topic, payload in messages:
            await pub.publish(topic, payload, qos=1)


def _dead_letter_count(metrics: str, reason: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("mx_ingest_dead_letters_total{") and f'reason="{reason}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_auto_registration_is_rate_limited_per_origin(settings: Settings) -> None:
    settings = settings.model_copy(update={"quarantine_per_min": 3})
    gw1 = [f"gw1dev{i}" for i in range(6)]
    gw2 = [f"gw2dev{i}" for i in range(2)]
    single = [f"onedev{i}" for i in range(5)]
    async with running_service(settings) as svc:
        await _publish(
            settings,
            (settings.topic("batch", "gw1"), json.dumps([_report(d, 1) for d in gw1]).encode()),
            (settings.topic("batch", "gw2"), json.dumps([_report(d, 1) for d in gw2]).encode()),
            # single-device topics each name their device: together they are one origin
            *[(settings.topic("tel", "smoke", d), json.dumps(_report(d, 1)).encode()) for d in single],
        )
        conn = await asyncpg.connect(settings.database_url)
        try:
            dead = await wait_for(lambda: _rows_when(conn, 5))
            await wait_for(lambda: _devices_with_readings_when(conn, 8))
            devices = {r["device_id"] for r in await conn.fetch("SELECT device_id FROM devices WHERE quarantined")}
            assert devices == {*gw1[:3], *gw2, *single[:3]}
            assert await conn.fetchval("SELECT count(DISTINCT device_id) FROM readings") == 8
            assert all(r["reason"].startswith("自动注册超出速率限制 (auto-registration rate limit)") for r in dead)
            by_source = sorted((r["source"], json.loads(bytes(r["raw"]))["device_id"]) for r in dead)
            assert by_source == sorted(
                [(f"mqtt:{settings.topic('batch', 'gw1')}", d) for d in gw1[3:]]
                + [(f"mqtt:{settings.topic('tel', 'smoke', d)}", d) for d in single[3:]]
            )
        finally:
            await conn.close()
        assert _dead_letter_count((await svc.http.get("/metrics")).text, "quarantine_rate") == 5


async def _rows_when(conn: asyncpg.Connection, n: int) -> list[asyncpg.Record] | None:
    rows = await conn.fetch("SELECT source, reason, raw FROM dead_letters ORDER BY id")
    return rows if len(rows) >= n else None


async def _devices_with_readings_when(conn: asyncpg.Connection, n: int) -> bool:
    return bool(await conn.fetchval("SELECT count(DISTINCT device_id) FROM readings") >= n)


async def _readings_when(conn: asyncpg.Connection, device: str, n: int) -> bool:
    return bool(await conn.fetchval("SELECT count(*) FROM readings WHERE device_id = $1", device) >= n)


async def test_auto_registration_is_capped_in_all(settings: Settings) -> None:
    settings = settings.model_copy(update={"quarantine_max": 2})
    devices = [f"capdev{i}" for i in range(4)]
    async with running_service(settings) as svc:
        batch = json.dumps([_report(d, 1) for d in devices]).encode()
        await _publish(settings, (settings.topic("batch", "gw1"), batch))
        conn = await asyncpg.connect(settings.database_url)
        try:
            dead = await wait_for(lambda: _rows_when(conn, 2))
            assert [json.loads(bytes(r["raw"]))["device_id"] for r in dead] == devices[2:]
            assert all(r["reason"].startswith("自动注册已达上限 (auto-registration cap)") for r in dead)
            # a quarantined device still reports; a new one from another gateway is still refused
            await _publish(
                settings,
                (settings.topic("tel", "smoke", devices[0]), json.dumps(_report(devices[0], 2)).encode()),
                (settings.topic("batch", "gw2"), json.dumps([_report("capdev9", 1)]).encode()),
            )
            await wait_for(lambda: _rows_when(conn, 3))
            await wait_for(lambda: _readings_when(conn, devices[0], 2))
            quarantined = {r["device_id"] for r in await conn.fetch("SELECT device_id FROM devices")}
            assert quarantined == set(devices[:2])
        finally:
            await conn.close()
        assert _dead_letter_count((await svc.http.get("/metrics")).text, "quarantine_cap") == 3


async def test_oversized_message_is_one_dead_letter_acknowledged_and_nothing_stored(settings: Settings) -> None:
    settings = settings.model_copy(update={"mqtt_max_payload": 2048, "mqtt_max_batch_payload": 8192})
    big = json.dumps(_report("bigdev", 1, note="x" * 6000)).encode()
    batch = json.dumps([_report(f"bdev{i}", 1) for i in range(20)]).encode()  # over 2048, under 8192
    assert len(big) > 4096 and 2048 < len(batch) < 8192
    conn = await asyncpg.connect(settings.database_url)
    try:
        async with running_service(settings) as svc:
            await _publish(settings, (settings.topic("tel", "smoke", "bigdev"), big),
                           (settings.topic("batch", "gw1"), batch))
            dead = await wait_for(lambda: _rows_when(conn, 1))
            await wait_for(lambda: conn.fetchval("SELECT count(*) FROM readings WHERE device_id = 'bdev19'"))
            assert dead[0]["reason"].startswith("消息过大 (payload too large)")
            assert bytes(dead[0]["raw"]) == big[:4096]
            assert await conn.fetchval("SELECT count(*) FROM readings WHERE device_id = 'bigdev'") == 0
            assert await conn.fetchval("SELECT count(*) FROM devices WHERE device_id = 'bigdev'") == 0
            assert _dead_letter_count((await svc.http.get("/metrics")).text, "too_large") == 1
        # acknowledged: the next session of the same client gets no redelivery of it, only what follows
        async with running_service(settings):
            after = json.dumps(_report("afterdev", 1)).encode()
            await _publish(settings, (settings.topic("tel", "smoke", "afterdev"), after))
            await wait_for(lambda: conn.fetchval("SELECT count(*) FROM readings WHERE device_id = 'afterdev'"))
        assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 1
    finally:
        await conn.close()


async def test_topics_not_of_the_contracts_shape_are_dead_letters(settings: Settings) -> None:
    report = json.dumps(_report("okdev", 1)).encode()
    bad = [
        settings.topic("evt", "smoke", "a", "b"),  # a '/' in the device id
        settings.topic("tel", "smoke", ""),  # an empty device id
        settings.topic("evt", "smok", "okdev"),  # no such kind
        settings.topic("batch", "gw1", "x"),  # a '/' in the gateway id
    ]
    async with running_service(settings) as svc:
        await _publish(settings, *[(t, report) for t in bad], (settings.topic("batch", "gw2"), b"[]"))
        conn = await asyncpg.connect(settings.database_url)
        try:
            dead = await wait_for(lambda: _rows_when(conn, 5))
            by_source = {r["source"]: r["reason"] for r in dead}
            for topic in bad:
                assert by_source[f"mqtt:{topic}"].startswith("主题不符合约定 (topic does not match the contract)")
            assert "nothing in the message is a report" in by_source[f"mqtt:{settings.topic('batch', 'gw2')}"]
            assert "has 3 levels, this topic 4" in by_source[f"mqtt:{bad[0]}"]
            assert await conn.fetchval("SELECT count(*) FROM readings") == 0
        finally:
            await conn.close()
        assert _dead_letter_count((await svc.http.get("/metrics")).text, "bad_topic") == 4


async def test_a_session_of_an_earlier_release_does_not_get_each_uplink_twice(settings: Settings) -> None:
    """A persistent session keeps the narrower filters of earlier releases (`evt/+/+`); they are
    dropped on connect, else Mosquitto would deliver each message once per matching filter."""
    host, port = _broker(settings.mqtt_url or "")
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    async with aiomqtt.Client(host, port, identifier=f"{settings.session_id()}-evt", clean_start=False,
                              protocol=aiomqtt.ProtocolVersion.V5, properties=props) as old:
        await old.subscribe(settings.topic("evt/+/+"), qos=1)
    topic = settings.topic("evt", "smoke", "d1")
    async with running_service(settings):
        await _publish(settings, (topic, b"\x01 first"), (topic, b"\x01 second"))
        conn = await asyncpg.connect(settings.database_url)
        try:
            dead = await wait_for(lambda: _rows_when(conn, 2))
            assert [bytes(r["raw"]) for r in dead] == [b"\x01 first", b"\x01 second"]
        finally:
            await conn.close()

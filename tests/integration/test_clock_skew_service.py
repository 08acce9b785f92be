"""Issue 16 through the running service: a device clock in year 9999 neither silences its
detector nor survives ingress; one smoke device naming components fakes no unit fire; the
components of a panel are bounded."""

from __future__ import annotations

import json
import time
from typing import Any

import aiomqtt
import asyncpg
import pytest

from miaoxiang.settings import Settings
from tests.service import running_service, wait_for

pytestmark = pytest.mark.integration
ADMIN = {"Authorization": "Bearer test-admin-token"}
YEAR_9999_MS = 253_402_300_799_000


def _broker(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("mqtt://").split(":")
    return host, int(port)


def now_ms() -> int:
    return int(time.time() * 1000)


async def _publish(settings: Settings, topic: str, *reports: Any) -> None:
    host, port = _broker(settings.mqtt_url or "")
    async with aiomqtt.Client(host, port) as pub:
        for report in reports:
            await pub.publish(topic, json.dumps(report), qos=1)


async def test_a_year_9999_report_is_clamped_and_the_detector_alarms_again_after_a_resolve(settings: Settings) -> None:
    device = "868120309999001"
    topic = settings.topic("evt", "smoke", device)
    async with running_service(settings) as svc:
        conn = await asyncpg.connect(settings.database_url)
        try:
            await _publish(settings, topic, {"ts": YEAR_9999_MS, "seq": 1, "event": "alarm"})
            first = await wait_for(lambda: conn.fetchrow("SELECT * FROM alarms WHERE alarm_key = $1",
                                                         f"device:{device}"))
            stored = await wait_for(lambda: conn.fetchrow("SELECT * FROM readings WHERE device_id = $1", device))
            assert stored["untimed"] and stored["ts"] == stored["received_at"]
            assert json.loads(stored["extra"])["clock_skew"]["device_ts_ms"] == YEAR_9999_MS
            assert first["last_seen"] < first["created_at"].replace(year=first["created_at"].year + 1)
            seen = (await svc.http.get(f"/api/v1/devices/{device}", headers=ADMIN)).json()
            assert seen["clock_skew"]["last_offset_s"] > 7e9 and seen["clock_skew"]["since"]

            await _publish(settings, topic, {"ts": now_ms(), "seq": 2, "event": "alarm_clear"})  # the real clear
            await wait_for(lambda: conn.fetchval("SELECT status = 'cleared_unack' FROM alarms WHERE alarm_id = $1",
                                                 first["alarm_id"]))
            seen = (await svc.http.get(f"/api/v1/devices/{device}", headers=ADMIN)).json()
            assert seen["clock_skew"] is None  # a plausible time again: the mark is lifted
            r = await svc.http.post(f"/api/v1/alarms/{first['alarm_id']}/resolve",
                                    json={"classification": "false_alarm"}, headers=ADMIN)
            assert r.status_code == 200, r.text

            await _publish(settings, topic, {"ts": now_ms(), "seq": 3, "event": "alarm"})  # a genuine alarm
            second = await wait_for(lambda: conn.fetchrow(
                "SELECT * FROM alarms WHERE alarm_key = $1 AND alarm_id <> $2", f"device:{device}", first["alarm_id"]))
            assert second["status"] == "active_unack" and second["type"] == "smoke"
        finally:
            await conn.close()


async def test_one_smoke_device_with_two_components_raises_no_fire(settings: Settings) -> None:
    device = "868120309999002"
    topic = settings.topic("evt", "smoke", device)
    async with running_service(settings) as svc:
        fleet = svc.app.state.services.fleet
        conn = await asyncpg.connect(settings.database_url)
        try:
            t = now_ms()
            await _publish(settings, topic, {"ts": t, "seq": 1, "event": "alarm", "component": "a"},
                           {"ts": t + 1, "seq": 2, "event": "alarm", "component": "b"})
            await wait_for(lambda: conn.fetchval("SELECT count(*) = 2 FROM readings WHERE device_id = $1", device))
            await wait_for(lambda: conn.fetchval("SELECT count(*) FROM alarms"))
            stored = await conn.fetch("SELECT extra FROM readings WHERE device_id = $1 ORDER BY seq", device)
            assert [json.loads(x["extra"])["component"] for x in stored] == ["a", "b"]  # kept, but no detector
            assert await conn.fetchval("SELECT count(*) FROM readings WHERE component IS NOT NULL") == 0
            types = [r["type"] for r in await conn.fetch("SELECT type FROM alarms")]
            assert types == ["smoke"] and fleet.slot(f"{device}:a") < 0
        finally:
            await conn.close()


async def test_components_beyond_the_bound_are_dead_lettered(settings: Settings) -> None:
    device = "uitd-bounded"
    topic = settings.topic("tel", "uitd", device)
    bounded = settings.model_copy(update={"max_components_per_device": 2})
    async with running_service(bounded) as svc:
        conn = await asyncpg.connect(settings.database_url)
        try:
            t = now_ms()
            await _publish(bounded, topic, *({"ts": t + i, "seq": i, "event": "report", "component": f"1:1:{i}"}
                                             for i in range(3)))
            dead = await wait_for(lambda: conn.fetchrow("SELECT * FROM dead_letters"))
            assert "部件已达上限 2" in dead["reason"] and "1:1:2" in dead["reason"]
            assert await conn.fetchval("SELECT count(*) FROM readings WHERE device_id = $1", device) == 2
            fleet = svc.app.state.services.fleet
            assert fleet.slot(f"{device}:1:1:1") >= 0 and fleet.slot(f"{device}:1:1:2") < 0
        finally:
            await conn.close()


async def test_a_gateway_batch_is_clamped_on_the_columnar_path_and_its_copy_is_recognised(settings: Settings) -> None:
    t = now_ms()
    batch = [{"device_id": "gw-w1", "kind": "water", "ts": YEAR_9999_MS, "seq": 5, "event": "report",
              "data": {"pressure_mpa": 0.3}},
             {"device_id": "gw-w2", "kind": "water", "ts": t, "seq": 6, "event": "report", "data": {"level_m": 2.5}}]
    async with running_service(settings) as svc:
        conn = await asyncpg.connect(settings.database_url)
        try:
            await _publish(settings, settings.topic("batch", "gw-1"), batch, batch)  # delivered twice
            await wait_for(lambda: conn.fetchval("SELECT count(*) = 2 FROM readings"))
            rows = {r["device_id"]: r for r in await conn.fetch("SELECT * FROM readings")}
            skewed, plain = rows["gw-w1"], rows["gw-w2"]
            assert skewed["untimed"] and skewed["ts"] == skewed["received_at"]
            assert json.loads(skewed["extra"])["clock_skew"]["device_ts_ms"] == YEAR_9999_MS
            assert not plain["untimed"] and int(plain["ts"].timestamp() * 1000) == t and plain["extra"] is None
            fleet = svc.app.state.services.fleet
            assert set(fleet.clock_skew) == {"gw-w1"}
            metrics = (await svc.http.get("/metrics")).text
            assert 'mx_ingest_duplicates_total{transport="mqtt"} 2.0' in metrics  # the copy, both elements
        finally:
            await conn.close()

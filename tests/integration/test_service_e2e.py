"""The real service: health endpoints, and an MQTT report that lands in PostgreSQL."""

import json

import aiomqtt
import asyncpg
import pytest

from miaoxiang.settings import Settings
from tests.service import running_service, wait_for

pytestmark = pytest.mark.integration


def _broker(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("mqtt://").split(":")
    return host, int(port)


async def test_health_ready_and_metrics(settings: Settings) -> None:
    async with running_service(settings) as svc:
        assert (await svc.http.get("/healthz")).json() == {"status": "ok"}
        ready = await svc.http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["database"] is True and ready.json()["broker"] is True
        metrics = await svc.http.get("/metrics")
        assert "mx_ingest_received_total" in metrics.text
        assert (await svc.http.get("/docs")).status_code == 200


async def test_mqtt_report_is_stored_and_acknowledged(settings: Settings) -> None:
    device = "868120301234567"
    report = {"ts": 1795341600000, "seq": 4711, "event": "alarm",
              "data": {"smoke_obscuration_pct_m": 4.2, "temperature_c": 31.5, "battery_pct": 86, "vendor_x": "kept"}}
    topic = settings.topic("evt", "smoke", device)
    async with running_service(settings) as svc:
        host, port = _broker(settings.mqtt_url or "")
        async with aiomqtt.Client(host, port) as pub:
            await pub.publish(topic, json.dumps(report), qos=1)
            await pub.publish(topic, b"\xa5 not a frame", qos=1)
        conn = await asyncpg.connect(settings.database_url)
        try:
            row = await wait_for(lambda: conn.fetchrow("SELECT * FROM readings WHERE device_id = $1", device))
            assert row["event"] == "alarm" and row["seq"] == 4711 and row["kind"] == "smoke"
            assert json.loads(row["metrics"])["temperature_c"] == 31.5
            assert json.loads(row["extra"]) == {"vendor_x": "kept"}
            assert int(row["ts"].timestamp() * 1000) == report["ts"]
            dead = await wait_for(lambda: conn.fetchrow("SELECT * FROM dead_letters"))
            assert dead["transport"] == "mqtt" and dead["source"] == f"mqtt:{topic}"
            assert bytes(dead["raw"]) == b"\xa5 not a frame"
            quarantined = await conn.fetchval("SELECT quarantined FROM devices WHERE device_id = $1", device)
            assert quarantined is True
        finally:
            await conn.close()
        assert svc.app.state.services.fleet.slot(device) >= 0



async def test_shutdown_ends_open_alarm_streams(settings: Settings) -> None:
    """A console left open must not hold a restart: the server ends its SSE stream and stops
    well before uvicorn's graceful-shutdown backstop would cancel it."""
    import asyncio
    import time

    import httpx

    from miaoxiang.server import GRACEFUL_SHUTDOWN_S, serving

    async with httpx.AsyncClient(timeout=30) as client:
        async with serving(settings) as (app, base):
            headers = {"Authorization": "Bearer test-admin-token"}
            stream = await client.send(
                client.build_request("GET", f"{base}/api/v1/alarms/stream", headers=headers), stream=True
            )
            assert stream.status_code == 200
            await wait_for(lambda: app.state.services.alarms.hub.subscribers)
            body = asyncio.create_task(stream.aread())
            started = time.monotonic()
        took = time.monotonic() - started
        assert (await asyncio.wait_for(body, 1)).startswith(b"retry:")  # the stream ended cleanly
        assert took < GRACEFUL_SHUTDOWN_S - 1

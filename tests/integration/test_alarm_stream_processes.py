"""Two real service instances on one database: each one's SSE stream carries the alarm changes the
other commits (LISTEN/NOTIFY), in event id order with no gaps, and Last-Event-ID resumes on
either instance without gaps."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator

import aiomqtt
import asyncpg
import httpx
import pytest

from miaoxiang.settings import Settings
from tests.service import RunningService, running_service, wait_for

pytestmark = pytest.mark.integration
REGION = "江西省/赣州市/章贡区/南外街道"
DEVICES = [f"8681203066{i:05d}" for i in range(6)]


class Stream:
    """An SSE client collecting (event id, alarm) pairs."""

    def __init__(self) -> None:
        self.events: list[tuple[int, dict]] = []
        self.open = asyncio.Event()

    async def run(self, svc: RunningService, last_event_id: int | None = None) -> None:
        headers = svc.auth() | ({"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {})
        async with httpx.AsyncClient(base_url=svc.base_url, timeout=None) as http, \
                http.stream("GET", "/api/v1/alarms/stream", headers=headers) as r:
            self.open.set()
            event_id: int | None = None
            async for line in r.aiter_lines():
                if line.startswith("id: "):
                    event_id = int(line[4:])
                elif line.startswith("data: ") and event_id is not None:
                    self.events.append((event_id, json.loads(line[6:])))
                    event_id = None

    @property
    def ids(self) -> list[int]:
        return [i for i, _ in self.events]


@contextlib.asynccontextmanager
async def streaming(svc: RunningService, last_event_id: int | None = None) -> AsyncIterator[Stream]:
    stream = Stream()
    task = asyncio.create_task(stream.run(svc, last_event_id))
    try:
        async with asyncio.timeout(10):
            await stream.open.wait()
        yield stream
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def publish_alarms(settings: Settings, devices: list[str]) -> None:
    host, port = (settings.mqtt_url or "").removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(host, int(port)) as pub:
        for i, device in enumerate(devices):
            report = {"ts": int(time.time() * 1000), "seq": i + 1, "event": "alarm", "data": {"temperature_c": 30}}
            await pub.publish(settings.topic("evt", "smoke", device), json.dumps(report), qos=1)


async def committed_ids(pool: asyncpg.Pool, after: int = 0) -> list[int]:
    return [
        r["event_id"]
        for r in await pool.fetch("SELECT event_id FROM alarm_events WHERE event_id > $1 ORDER BY event_id", after)
    ]


async def test_alarms_of_one_instance_stream_from_the_other_in_order_and_resume(settings: Settings) -> None:
    other = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}-b",
                                        "mqtt_client_id": f"mxtest-{uuid.uuid4().hex[:8]}"})
    async with running_service(settings) as a, running_service(other) as b:
        r = await a.http.post(
            "/api/v1/units", headers=a.auth(), json={"unit_id": "U1", "name": "商场", "region": REGION}
        )
        assert r.status_code in (200, 201), r.text
        lines = "\n".join(json.dumps({"device_id": d, "kind": "smoke", "unit_id": "U1"}) for d in DEVICES)
        r = await a.http.post("/api/v1/devices/import", headers={**a.auth(), "Content-Type": "application/x-ndjson"},
                              content=lines)
        assert r.status_code == 200, r.text
        pool: asyncpg.Pool = a.app.state.services.pool
        async with streaming(a) as on_a, streaming(b) as on_b:
            await publish_alarms(settings, DEVICES[:1])  # raised by A only (B listens on another prefix)
            await wait_for(lambda: on_b.events)
            [(first_id, alarm)] = on_b.events
            assert alarm["device_ids"] == [DEVICES[0]] and alarm["status"] == "active_unack"
            assert first_id == (await committed_ids(pool))[0]
            # B commits (acks), A commits (raises, unit fire), at the same time
            ack = await b.http.post(f"/api/v1/alarms/{alarm['alarm_id']}/ack", headers=b.auth())
            assert ack.status_code == 200, ack.text
            await asyncio.gather(
                publish_alarms(settings, DEVICES[1:]),
                b.http.post(
                    f"/api/v1/alarms/{alarm['alarm_id']}/resolve", headers=b.auth(), json={"classification": "test"}
                ),
            )
            await wait_for(lambda: _alarm_count(pool, len(DEVICES)))
            await asyncio.sleep(0.3)
            everything = await committed_ids(pool)
            await wait_for(lambda: on_a.ids == everything and on_b.ids == everything)
        actions = {e["action"] for e in await pool.fetch("SELECT action FROM alarm_events")}
        assert {"raised", "acked", "resolved"} <= actions
        # resume after the first event, on either instance: exactly what followed, in order
        for svc in (a, b):
            async with streaming(svc, first_id) as resumed:
                await wait_for(lambda: len(resumed.ids) >= len(everything) - 1)
                assert resumed.ids == everything[1:]


async def _alarm_count(pool: asyncpg.Pool, n: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM alarms WHERE type = 'smoke'") >= n

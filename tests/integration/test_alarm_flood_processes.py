"""A flooding detector never delays its neighbours' alarms (real service, Mosquitto, PostgreSQL,
publisher processes of their own).

One process floods 1,000 alarm reports per second from one detector for ~20 s while another
raises an ordinary smoke alarm of a different detector every second. Every one of those alarms
is committed (in the `alarms` table) within 1 s of its publication at the 99th percentile; the
flood is one alarm whose count is exactly the number of flood reports, marked `flooding` (and
cleared by an operator), and its repeats reach the stream at most about twice a second.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from typing import Any

import aiomqtt
import asyncpg
import pytest

from devices.auth import create_token
from miaoxiang.settings import Settings
from tests.integration.faultkit import mosquitto
from tests.integration.test_alarm_stream_processes import streaming
from tests.service import running_service, wait_for

pytestmark = pytest.mark.integration
FLOOD_DEVICE = "86812030990000"
OTHERS = [f"868120309{i:05d}" for i in range(1, 21)]
FLOOD_RATE, FLOOD_S = 1000, 20.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _flood_child(host: str, port: int, topic: str, rate: float, seconds: float, out: Any) -> None:
    asyncio.run(_flood(host, port, topic, rate, seconds, out))


async def _flood(host: str, port: int, topic: str, rate: float, seconds: float, out: Any) -> None:
    """Alarm reports of one detector at `rate`, device times strictly increasing, sent in order
    (QoS 1, many in flight); puts how many were sent and over how long."""
    sent, ts = 0, 0
    inflight: set[asyncio.Task[None]] = set()
    async with aiomqtt.Client(host, port, max_inflight_messages=1000) as client:
        started = time.perf_counter()
        while (now := time.perf_counter()) - started < seconds:
            due = started + sent / rate
            if due > now:
                await asyncio.sleep(due - now)
            ts = max(now_ms(), ts + 1)
            report = {"ts": ts, "seq": sent + 1, "event": "alarm", "data": {"temperature_c": 30}}
            task = asyncio.create_task(client.publish(topic, json.dumps(report), qos=1))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
            if len(inflight) >= 200:
                await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
            sent += 1
        await asyncio.gather(*inflight)
        out.put((sent, time.perf_counter() - started))


def _others_child(host: str, port: int, topics: list[str], gap_s: float, out: Any) -> None:
    asyncio.run(_others(host, port, topics, gap_s, out))


async def _others(host: str, port: int, topics: list[str], gap_s: float, out: Any) -> None:
    """One ordinary smoke alarm per topic, `gap_s` apart; puts the wall time each was published."""
    published: list[float] = []
    async with aiomqtt.Client(host, port) as client:
        for i, topic in enumerate(topics):
            report = {"ts": now_ms(), "seq": 1, "event": "alarm", "data": {"temperature_c": 31}}
            published.append(time.time())
            await client.publish(topic, json.dumps(report), qos=1)
            if i < len(topics) - 1:
                await asyncio.sleep(gap_s)
    out.put(published)


async def _committed_at(pool: asyncpg.Pool, keys: list[str], seen: dict[str, float], stop: asyncio.Event) -> None:
    """Poll the alarms table every 10 ms; note when each key's alarm first appears (committed)."""
    while not stop.is_set():
        for r in await pool.fetch("SELECT alarm_key FROM alarms WHERE alarm_key = ANY($1::text[])", keys):
            seen.setdefault(r["alarm_key"], time.time())
        await asyncio.sleep(0.01)


async def test_a_flooding_detector_never_delays_other_alarms(settings: Settings) -> None:
    with mosquitto() as broker:  # a private one with a deployment's no-loss queues (DESIGN.md)
        await _flood_and_others(settings.model_copy(update={"mqtt_url": broker.url}))


async def _flood_and_others(settings: Settings) -> None:
    async with asyncio.timeout(120), running_service(settings) as svc:
        devices = [FLOOD_DEVICE, *OTHERS]
        for i, _ in enumerate(devices):  # a unit each: no unit-level fire correlation mixes in
            unit = {"unit_id": f"F{i:02d}", "name": f"单位{i}", "region": f"江西省/赣州市/街道{i}"}
            r = await svc.http.post("/api/v1/units", headers=svc.auth(), json=unit)
            assert r.status_code in (200, 201), r.text
        lines = "\n".join(json.dumps({"device_id": d, "kind": "smoke", "unit_id": f"F{i:02d}"})
                          for i, d in enumerate(devices))
        ndjson = {**svc.auth(), "Content-Type": "application/x-ndjson"}
        r = await svc.http.post("/api/v1/devices/import", headers=ndjson, content=lines)
        assert r.status_code == 200, r.text
        pool: asyncpg.Pool = svc.app.state.services.pool
        host, port = (settings.mqtt_url or "").removeprefix("mqtt://").split(":")
        ctx = multiprocessing.get_context("spawn")
        flood_out, others_out = ctx.Queue(), ctx.Queue()
        flood = ctx.Process(target=_flood_child, args=(
            host, int(port), settings.topic("evt", "smoke", FLOOD_DEVICE), FLOOD_RATE, FLOOD_S, flood_out))
        others = ctx.Process(target=_others_child, args=(
            host, int(port), [settings.topic("evt", "smoke", d) for d in OTHERS], 0.9, others_out))
        seen: dict[str, float] = {}
        stop = asyncio.Event()
        async with streaming(svc) as stream:
            poller = asyncio.create_task(_committed_at(pool, [f"device:{d}" for d in OTHERS], seen, stop))
            try:
                flood.start()
                await asyncio.sleep(1.5)  # the flood is in full flow before the first other alarm
                others.start()
                published = await asyncio.to_thread(others_out.get, True, 60)
                sent, flood_s = await asyncio.to_thread(flood_out.get, True, FLOOD_S + 30)
                flood_done = time.monotonic()
                await wait_for(lambda: len(seen) == len(OTHERS), timeout=10)
            finally:
                stop.set()
                await poller
                for proc in (flood, others):
                    await asyncio.to_thread(proc.join, 10)
                    if proc.is_alive():
                        proc.kill()
            assert sent / flood_s > 0.8 * FLOOD_RATE, f"the flood reached {sent / flood_s:.0f}/s only"
            latencies = sorted(seen[f"device:{d}"] - t for d, t in zip(OTHERS, published))
            p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
            assert p99 <= 1.0, f"other alarms committed after {latencies} s"
            # the flood: one alarm whose count is every report, once the last repeats are flushed
            key = f"device:{FLOOD_DEVICE}"
            await wait_for(lambda: pool.fetchval("SELECT count FROM alarms WHERE alarm_key = $1 AND count = $2",
                                                 key, sent), timeout=15)
            settled = time.monotonic()
            assert settled - flood_done < 5
            [flood_alarm] = await pool.fetch("SELECT * FROM alarms WHERE alarm_key = $1", key)
            assert flood_alarm["rule"].endswith("+flooding")
            # the stream: the flood alarm's changes at most about twice a second
            flood_events = [a for _, a in stream.events if a["alarm_id"] == str(flood_alarm["alarm_id"])]
            assert flood_events[-1]["count"] == sent
            assert len(flood_events) <= 2 * (flood_s + 3), len(flood_events)
        async def flags(device: str) -> list[str]:
            return (await svc.http.get(f"/api/v1/devices/{device}", headers=svc.auth())).json()["flags"]

        assert "flooding" in await flags(FLOOD_DEVICE) and "flooding" not in await flags(OTHERS[0])
        marked = await pool.fetch("SELECT action, actor FROM device_audit WHERE device_id = $1", FLOOD_DEVICE)
        assert [(r["action"], r["actor"]) for r in marked] == [("flooding_marked", "system")]
        # an operator clears the mark, audited like a flapping mark
        viewer_token = await _token(pool, "viewer")
        r = await svc.http.post(f"/api/v1/devices/{FLOOD_DEVICE}/flooding/clear", headers=viewer_token)
        assert r.status_code == 403
        r = await svc.http.post(f"/api/v1/devices/{FLOOD_DEVICE}/flooding/clear", headers=svc.auth(),
                                json={"note": "探测器已更换"})
        assert r.status_code == 200 and r.json()["cleared"] is True, r.text
        assert "flooding" not in await flags(FLOOD_DEVICE)
        r = await svc.http.post(f"/api/v1/devices/{FLOOD_DEVICE}/flooding/clear", headers=svc.auth())
        assert r.json()["cleared"] is False
        assert (await svc.http.post("/api/v1/devices/NOPE/flooding/clear", headers=svc.auth())).status_code == 404
        cleared = await pool.fetchrow(
            "SELECT actor, detail FROM device_audit WHERE device_id = $1 AND action = 'flooding_cleared'", FLOOD_DEVICE)
        assert json.loads(cleared["detail"]) == {"note": "探测器已更换"}


async def _token(pool: asyncpg.Pool, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {await create_token(pool, role, role, [])}"}

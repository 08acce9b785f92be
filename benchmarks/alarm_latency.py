"""Alarm latency: from an MQTT publish on the `evt` lane to the alarm's event on the SSE stream.

The whole service runs (private Mosquitto with TCP_NODELAY, fresh database, real uvicorn); an
SSE client subscribed with the admin token timestamps every new alarm. Measured twice: idle
(nothing else going on) and under a burst: a rate-controlled stream of single `tel` reports
(default 10,000 messages/s, bounded by `--burst-messages` and `--burst-max-s`) from publisher
processes of their own while the alarms are published on `evt`; the rate reached is printed. Also
prints the service's own receipt-to-stream histogram (`mx_alarm_stream_latency_seconds`).
Goals: p99 <= 50 ms idle, <= 200 ms under the burst.

`--flood`: instead, one detector floods alarm reports (`--flood-rate`, default 1,000/s, for
`--flood-s`, from a publisher process) while an ordinary smoke alarm of another detector is
published every second; reports, for those other alarms, publish-to-stream (pending or
committed) and publish-to-commit latency (the `alarms` table polled every 10 ms), the flood
rate reached, the flood alarm's final count against the reports sent, its stream events, and
the load average. Goal: commit p99 <= 1 s.
Prints one JSON object.

    python benchmarks/alarm_latency.py [--alarms 200] [--burst-rate 10000 --burst-messages 60000 --burst-max-s 20]
    python benchmarks/alarm_latency.py --flood [--flood-rate 1000 --flood-s 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiomqtt
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_db import drop_db, fresh_db
from mqtt_broker import private_mosquitto

from ingest.transports.mqtt import BrokerConfig
from miaoxiang.server import serving
from miaoxiang.settings import Settings

ADMIN = {"Authorization": "Bearer bench-admin"}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def percentiles(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    if not v:
        return {}

    def at(q: float) -> float:
        return round(v[min(len(v) - 1, int(q * len(v)))], 1)

    return {"n": len(v), "p50": at(0.5), "p95": at(0.95), "p99": at(0.99), "max": round(v[-1], 1)}


async def register(http: httpx.AsyncClient, alarm_devices: list[str]) -> None:
    """One unit per alarm device (so no unit-level fire correlation mixes in) plus their devices."""
    for i in range(len(alarm_devices)):
        r = await http.post("/api/v1/units", headers=ADMIN, json={
            "unit_id": f"U{i:04d}", "name": f"单位{i}", "region": f"江西省/赣州市/章贡区/街道{i % 10}"})
        r.raise_for_status()
    lines = "\n".join(
        json.dumps({"device_id": d, "kind": "smoke", "unit_id": f"U{i:04d}"}) for i, d in enumerate(alarm_devices)
    )
    r = await http.post(
        "/api/v1/devices/import", headers={**ADMIN, "Content-Type": "application/x-ndjson"}, content=lines
    )
    r.raise_for_status()


class StreamClock:
    """Reads the SSE stream; records when the first event of each device's alarm arrived, and
    how many events named each device."""

    def __init__(self) -> None:
        self.first_seen: dict[str, float] = {}
        self.events: dict[str, int] = {}
        self.ready = asyncio.Event()

    async def run(self, http: httpx.AsyncClient) -> None:
        async with http.stream("GET", "/api/v1/alarms/stream", headers=ADMIN, timeout=None) as r:
            self.ready.set()
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    alarm = json.loads(line[6:])
                    for d in alarm["device_ids"]:
                        self.first_seen.setdefault(d, time.perf_counter())
                        self.events[d] = self.events.get(d, 0) + 1


async def publish_alarms(client: aiomqtt.Client, root: str, devices: list[str], gap_s: float) -> dict[str, float]:
    sent: dict[str, float] = {}
    for i, device in enumerate(devices):
        payload = json.dumps({"device_id": device, "kind": "smoke", "ts": now_ms(), "seq": i, "event": "alarm",
                              "data": {"smoke_obscuration_pct_m": 4.2, "temperature_c": 31.5}}).encode()
        sent[device] = time.perf_counter()
        await client.publish(f"{root}/evt/smoke/{device}", payload, qos=1)
        await asyncio.sleep(gap_s)
    return sent


def _burst_child(url: str, root: str, rate: float, first: int, step: int, count: int, max_s: float, out: Any) -> None:
    """One burst publisher process: messages first, first + step, ... at its share of the rate."""
    asyncio.run(_burst_share(url, root, rate, first, step, count, max_s, out))


async def _burst_share(
    url: str, root: str, rate: float, first: int, step: int, count: int, max_s: float, out: Any
) -> None:
    cfg = BrokerConfig.from_url(url)
    sent = 0
    async with aiomqtt.Client(cfg.host, cfg.port, max_inflight_messages=1000) as client:
        started = time.perf_counter()
        deadline = started + max_s

        async def lane(k: int) -> None:  # several in flight, so one PUBACK round trip does not pace it
            nonlocal sent
            for i in range(first + k * step, count, step * LANES):
                due = started + i / rate
                now = time.perf_counter()
                if now >= deadline:
                    return
                if due > now:
                    await asyncio.sleep(due - now)
                device = f"86900{i % 20000:010d}"
                payload = json.dumps({"device_id": device, "kind": "smoke", "ts": now_ms(), "seq": i % 65536,
                                      "event": "heartbeat", "data": {"battery_pct": 80, "rsrp_dbm": -95}}).encode()
                await client.publish(f"{root}/tel/smoke/{device}", payload, qos=1)
                sent += 1

        async with asyncio.TaskGroup() as tg:
            for k in range(LANES):
                tg.create_task(lane(k))
        out.put((sent, time.perf_counter() - started))


#: Publisher processes for the burst (the service runs in this process: a publisher here would
#: share its event loop and cap the burst near 4,500 msgs/s), and concurrent sends in each.
BURST_PROCESSES, LANES = 3, 16


async def burst(url: str, root: str, rate: float, count: int, max_s: float) -> dict[str, float]:
    """`count` single tel reports at `rate` per second from BURST_PROCESSES processes, for at most `max_s`."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_burst_child, args=(url, root, rate, k, BURST_PROCESSES, count, max_s, out))
             for k in range(BURST_PROCESSES)]
    for proc in procs:
        proc.start()
    shares = [await asyncio.to_thread(out.get, True, max_s + 60) for _ in procs]
    for proc in procs:
        await asyncio.to_thread(proc.join, 10)
    sent, elapsed = sum(n for n, _ in shares), max(t for _, t in shares)
    return {
        "sent": sent,
        "seconds": round(elapsed, 2),
        "messages_per_s": round(sent / elapsed),
        "processes": BURST_PROCESSES,
    }


async def wait_all(stream: StreamClock, devices: list[str], timeout: float = 60) -> None:
    async with asyncio.timeout(timeout):
        while any(d not in stream.first_seen for d in devices):
            await asyncio.sleep(0.01)


def service_histogram(registry: Any) -> dict[str, float]:
    name = "mx_alarm_stream_latency_seconds"
    count = registry.get_sample_value(f"{name}_count") or 0
    total = registry.get_sample_value(f"{name}_sum") or 0
    buckets = sorted(
        (float(s.labels["le"]), s.value) for m in registry.collect() if m.name == name
        for s in m.samples if s.name == f"{name}_bucket"
    )
    p99_le = next((le for le, c in buckets if count and c >= 0.99 * count), float("inf"))
    return {
        "n": int(count),
        "mean_ms": round(1000 * total / count, 2) if count else 0.0,
        "p99_at_most_ms": p99_le * 1000,
    }


def _flood_child(url: str, topic: str, rate: float, seconds: float, out: Any) -> None:
    asyncio.run(_flood(url, topic, rate, seconds, out))


async def _flood(url: str, topic: str, rate: float, seconds: float, out: Any) -> None:
    """Alarm reports of one detector at `rate` for `seconds`, device times strictly increasing,
    sent in order (QoS 1, up to 200 in flight); puts (sent, seconds)."""
    cfg = BrokerConfig.from_url(url)
    sent, ts = 0, 0
    inflight: set[asyncio.Task[None]] = set()
    async with aiomqtt.Client(cfg.host, cfg.port, max_inflight_messages=1000) as client:
        started = time.perf_counter()
        while (now := time.perf_counter()) - started < seconds:
            due = started + sent / rate
            if due > now:
                await asyncio.sleep(due - now)
            ts = max(now_ms(), ts + 1)
            payload = json.dumps({"kind": "smoke", "ts": ts, "seq": sent + 1, "event": "alarm",
                                  "data": {"smoke_obscuration_pct_m": 4.2, "temperature_c": 31.5}}).encode()
            task = asyncio.create_task(client.publish(topic, payload, qos=1))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
            if len(inflight) >= 200:
                await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
            sent += 1
        await asyncio.gather(*inflight)
        out.put((sent, time.perf_counter() - started))


async def committed_at(pool: Any, devices: list[str], seen: dict[str, float], stop: asyncio.Event) -> None:
    """Poll the alarms table every 10 ms: when each device's alarm was first there (committed)."""
    keys = [f"device:{d}" for d in devices]
    while not stop.is_set():
        for r in await pool.fetch("SELECT alarm_key FROM alarms WHERE alarm_key = ANY($1::text[])", keys):
            seen.setdefault(r["alarm_key"].removeprefix("device:"), time.perf_counter())
        await asyncio.sleep(0.01)


async def flood_mode(args: argparse.Namespace) -> dict[str, Any]:
    """One detector floods alarms from a publisher process while others raise one alarm a second."""
    flood_device = "86812059990000"
    others = [f"8681205{i:08d}" for i in range(int(args.flood_s) - 3)]
    prefix = f"mxbench/{uuid.uuid4().hex[:6]}"
    root = f"{prefix}/default"
    load_before = os.getloadavg()
    with private_mosquitto() as url:
        db = await fresh_db(migrated=False)
        try:
            settings = Settings(database_url=db, mqtt_url=url, topic_prefix=prefix, http_port=0, gb26875_port=0,
                                log_level="WARNING", data_dir=Path("/tmp"), admin_token="bench-admin",
                                mqtt_client_id=f"bench-{uuid.uuid4().hex[:6]}")
            async with serving(settings) as (app, base), httpx.AsyncClient(base_url=base, timeout=30) as http:
                await register(http, [flood_device, *others])
                pool = app.state.services.pool
                stream = StreamClock()
                reader = asyncio.create_task(stream.run(http))
                await stream.ready.wait()
                commits: dict[str, float] = {}
                stop = asyncio.Event()
                poller = asyncio.create_task(committed_at(pool, others, commits, stop))
                ctx = multiprocessing.get_context("spawn")
                out = ctx.Queue()
                proc = ctx.Process(target=_flood_child, args=(
                    url, f"{root}/evt/smoke/{flood_device}", args.flood_rate, args.flood_s, out))
                proc.start()
                await asyncio.sleep(2)  # the publisher process starts; the flood is in full flow
                cfg = BrokerConfig.from_url(url)
                async with aiomqtt.Client(cfg.host, cfg.port) as client:
                    sent_at = await publish_alarms(client, root, others, 1.0)
                load_during = os.getloadavg()
                sent, flood_s = await asyncio.to_thread(out.get, True, args.flood_s + 60)
                flood_done = time.perf_counter()
                await asyncio.to_thread(proc.join, 10)
                await wait_all(stream, others)
                async with asyncio.timeout(60):
                    while len(commits) < len(others):
                        await asyncio.sleep(0.01)
                    while (count := await pool.fetchval(
                            "SELECT count FROM alarms WHERE alarm_key = $1", f"device:{flood_device}")) != sent:
                        await asyncio.sleep(0.05)
                settled_s = time.perf_counter() - flood_done
                flags = (await http.get(f"/api/v1/devices/{flood_device}", headers=ADMIN)).json()["flags"]
                stop.set()
                await poller
                reader.cancel()
        finally:
            await drop_db(db)
    stream_ms = percentiles([1000 * (stream.first_seen[d] - sent_at[d]) for d in others])
    commit_ms = percentiles([1000 * (commits[d] - sent_at[d]) for d in others])
    return {
        "benchmark": "alarm_latency_flood",
        "other_alarms": len(others),
        "publish_to_stream_ms": stream_ms,
        "publish_to_commit_ms": commit_ms,
        "flood": {
            "target_alarms_per_s": args.flood_rate,
            "sent": sent,
            "seconds": round(flood_s, 2),
            "alarms_per_s": round(sent / flood_s),
            "final_count": count,
            "count_settled_after_s": round(settled_s, 2),
            "stream_events": stream.events.get(flood_device, 0),
            "stream_events_per_s": round(stream.events.get(flood_device, 0) / flood_s, 2),
            "device_flags": flags,
        },
        "load_average": {"before": load_before, "during": load_during, "after": os.getloadavg()},
        "goals": {"publish_to_commit_p99_ms": 1000},
        "goals_met": {"commit": commit_ms.get("p99", float("inf")) <= 1000, "count_exact": count == sent},
    }


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--alarms", type=int, default=200)
    ap.add_argument("--burst-rate", type=float, default=10_000, help="tel messages per second")
    ap.add_argument("--burst-messages", type=int, default=60_000, help="at most this many tel messages")
    ap.add_argument("--burst-max-s", type=float, default=20.0, help="and for at most this long")
    ap.add_argument("--flood", action="store_true", help="measure other alarms while one detector floods")
    ap.add_argument("--flood-rate", type=float, default=1000, help="flood alarm reports per second")
    ap.add_argument("--flood-s", type=float, default=20.0, help="for this long")
    args = ap.parse_args()
    if args.flood:
        print(json.dumps(await flood_mode(args), indent=2, ensure_ascii=False))
        return
    quiet_devices = [f"8681203{i:08d}" for i in range(args.alarms)]
    load_devices = [f"8681204{i:08d}" for i in range(args.alarms)]
    prefix = f"mxbench/{uuid.uuid4().hex[:6]}"
    root = f"{prefix}/default"
    with private_mosquitto() as url:
        db = await fresh_db(migrated=False)
        try:
            settings = Settings(database_url=db, mqtt_url=url, topic_prefix=prefix, http_port=0, gb26875_port=0,
                                log_level="WARNING", data_dir=Path("/tmp"), admin_token="bench-admin",
                                mqtt_client_id=f"bench-{uuid.uuid4().hex[:6]}")
            async with serving(settings) as (app, base), httpx.AsyncClient(base_url=base, timeout=30) as http:
                await register(http, quiet_devices + load_devices)
                stream = StreamClock()
                reader = asyncio.create_task(stream.run(http))
                await stream.ready.wait()
                cfg = BrokerConfig.from_url(url)
                async with aiomqtt.Client(cfg.host, cfg.port, max_inflight_messages=1000) as client:
                    sent = await publish_alarms(client, root, quiet_devices, 0.01)
                    await wait_all(stream, quiet_devices)
                    quiet = [1000 * (stream.first_seen[d] - sent[d]) for d in quiet_devices]
                    written = app.state.services.pipeline.metrics.written
                    before, started = written._value.get(), time.perf_counter()
                    flooding = asyncio.create_task(
                        burst(url, root, args.burst_rate, args.burst_messages, args.burst_max_s)
                    )
                    await asyncio.sleep(
                        1.5
                    )  # the publisher processes start; the burst is in full flow before the first alarm
                    sent = await publish_alarms(client, root, load_devices, 0.01)
                    await wait_all(stream, load_devices)
                    loaded = [1000 * (stream.first_seen[d] - sent[d]) for d in load_devices]
                    burst_figures = await flooding
                    async with asyncio.timeout(120):
                        while written._value.get() - before < burst_figures["sent"]:
                            await asyncio.sleep(0.05)
                    burst_figures["drained_after_s"] = round(time.perf_counter() - started, 2)
                reader.cancel()
                histogram = service_histogram(app.state.services.metrics_registry)
        finally:
            await drop_db(db)
    idle, under_burst = percentiles(quiet), percentiles(loaded)
    print(
        json.dumps(
            {
                "benchmark": "alarm_latency",
                "alarms_per_phase": args.alarms,
                "publish_to_sse_idle_ms": idle,
                "publish_to_sse_under_burst_ms": under_burst,
                "burst_tel": {"target_messages_per_s": args.burst_rate, **burst_figures},
                "service_receipt_to_stream": histogram,
                "goals": {"publish_to_sse_idle_p99_ms": 50, "publish_to_sse_under_burst_p99_ms": 200},
                "goals_met": {
                    "idle": idle.get("p99", float("inf")) <= 50,
                    "under_burst": under_burst.get("p99", float("inf")) <= 200,
                },
            },
            indent=2,
            ensure_ascii=False,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())

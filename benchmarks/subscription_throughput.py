"""Readings/s into the service through a platform subscription against MQTT, in one run.

Each path is measured the same way, on the same readings (`--readings` of `--devices` detectors),
with a fresh database and the whole service (decode, dedupe, batch, fleet, alerting, COPY,
acknowledgement after commit):

- `mqtt`:      JSON reports on `tel/` topics, QoS 1, queued by a private Mosquitto for the service's
               persistent session while it is away;
- `ctwing_mq`: CTWing `dataReport` envelopes (MX1 frame in APPdata) on a private pulsar-lite
               topic, a backlog kept for the source's failover subscription;
- `iotda_amqp`: Huawei IoTDA `notify_data` property reports (through the `iotda-smoke` profile) in
               a durable queue of a private RabbitMQ node (AMQP 1.0, tests/integration/rabbitkit),
               consumed with IoTDA's signed login, credit 1000.

The backlog is in the broker before the service consumes it; the clock starts when the first
reading is stored and stops when the last one is, so start-up and publishing are outside the
timed window. A path is one entry of `PATHS` (a name and `async def(readings, db) -> context`
that puts the backlog in place and yields the service settings to consume it with, plus what to
do once the service runs): an AMQP path is one more entry. Prints one JSON object, with the load
average before, during and after.

    python benchmarks/subscription_throughput.py [--readings 20000] [--devices 2000] [--paths mqtt,ctwing_mq]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import asyncpg
import httpx
import pulsar

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # tests.integration.rabbitkit
from bench_db import drop_db, fresh_db
from mqtt_broker import private_mosquitto
from pulsar_broker import private_pulsar

from devices.kinds import Event, Kind
from devices.reading import Reading
from ingest.codecs.json_report import encode_json_report
from ingest.codecs.profiles import ProfileRegistry
from ingest.transports.mqtt import BrokerConfig
from miaoxiang.server import serving
from miaoxiang.settings import Settings
from simulators.amqp_sink import AmqpMessage, send
from simulators.envelopes import ctwing_request, iotda_message
from tests.integration import rabbitkit

TS0 = 1_795_341_600_000
ADMIN = "bench-admin"
TENANT_ID = "2000001"


def readings(n: int, devices: int) -> list[Reading]:
    return [Reading(f"8681203{i % devices:08d}", Kind.smoke, Event.report, TS0 + (i // devices) * 1000, TS0,
                    seq=(i // devices) % 60000, metrics={"battery_pct": 80 + i % 20}) for i in range(n)]


@dataclass
class Consumer:
    """What a path hands the measurement: service settings, and a step once the service runs."""

    settings: Settings
    start: Callable[[httpx.AsyncClient], Awaitable[None]]


async def _nothing(_http: httpx.AsyncClient) -> None:
    return None


def _settings(db: str, mqtt_url: str, prefix: str, client_id: str) -> Settings:
    return Settings(database_url=db, mqtt_url=mqtt_url, topic_prefix=prefix, mqtt_client_id=client_id, http_port=0,
                gb26875_port=0, log_level="WARNING", data_dir=Path("/tmp"), admin_token=ADMIN,
                quarantine_per_min=10_000_000, quarantine_max=10_000_000)  # every device arrives unknown


@contextlib.asynccontextmanager
async def mqtt_path(items: list[Reading], db: str) -> AsyncIterator[Consumer]:
    prefix, client_id = f"mxbench/{uuid.uuid4().hex[:6]}", f"bench-{uuid.uuid4().hex[:6]}"
    with private_mosquitto() as url:
        settings = _settings(db, url, prefix, client_id)
        async with serving(settings):
            pass  # the persistent session exists: the broker queues what follows for it
        cfg = BrokerConfig.from_url(url)
        async with aiomqtt.Client(cfg.host, cfg.port, max_inflight_messages=1000) as c:
            for k in range(0, len(items), 500):
                await asyncio.gather(*(c.publish(f"{prefix}/default/tel/smoke/{r.device_id}", encode_json_report(r),
                                                 qos=1) for r in items[k:k + 500]))
        yield Consumer(settings, _nothing)


@contextlib.asynccontextmanager
async def ctwing_mq_path(items: list[Reading], db: str) -> AsyncIterator[Consumer]:
    topic, subscription = f"bench-{uuid.uuid4().hex[:6]}", "miaoxiang"
    full = f"persistent://aep-msgpush/{TENANT_ID}/{topic}"
    with private_pulsar() as url, private_mosquitto() as mqtt_url:
        def backlog() -> None:
            client = pulsar.Client(url, logger=logging.getLogger("pulsar"))  # not the C++ client's stdout
            try:
                client.subscribe(full, subscription, consumer_type=pulsar.ConsumerType.Failover).close()
                producer = client.create_producer(full, batching_enabled=True, block_if_queue_full=True)
                for r in items:
                    producer.send_async(ctwing_request(r, "", tenant_id=TENANT_ID)[0], None)
                producer.flush()
            finally:
                client.close()

        await asyncio.to_thread(backlog)

        async def subscribe(http: httpx.AsyncClient) -> None:
            config = {"service_url": url, "tenant_id": TENANT_ID, "topic": topic, "subscription": subscription,
                      "max_unacked": 1000}
            answer = await http.post("/api/v1/push-sources",
                                     json={"name": "bench-ctwing", "platform": "ctwing_mq", "config": config})
            answer.raise_for_status()

        yield Consumer(_settings(db, mqtt_url, f"mxbench/{uuid.uuid4().hex[:6]}", f"bench-{uuid.uuid4().hex[:6]}"),
                       subscribe)


@contextlib.asynccontextmanager
async def iotda_amqp_path(items: list[Reading], db: str) -> AsyncIterator[Consumer]:
    reason = rabbitkit.unavailable()
    if reason is not None:
        raise RuntimeError(f"iotda_amqp: {reason}")
    profile = ProfileRegistry.load().get("iotda-smoke")
    assert profile is not None
    with tempfile.TemporaryDirectory() as tmp, rabbitkit.rabbit_node(Path(tmp)) as node, \
            private_mosquitto() as mqtt_url:
        node.declare_queue("bench")
        await asyncio.to_thread(send, node.publisher_url("bench"), [AmqpMessage(iotda_message(r, profile))
                                                                    for r in items])

        async def subscribe(http: httpx.AsyncClient) -> None:
            config = rabbitkit.iotda_config(node, "bench", max_unacked=1000)
            answer = await http.post("/api/v1/push-sources",
                                     json={"name": "bench-iotda", "platform": "iotda_amqp", "config": config})
            answer.raise_for_status()

        yield Consumer(_settings(db, mqtt_url, f"mxbench/{uuid.uuid4().hex[:6]}", f"bench-{uuid.uuid4().hex[:6]}"),
                       subscribe)


#: name -> a backlog in a broker and how the service consumes it
PATHS: dict[str, Callable[[list[Reading], str], contextlib.AbstractAsyncContextManager[Consumer]]] = {
    "mqtt": mqtt_path,
    "ctwing_mq": ctwing_mq_path,
    "iotda_amqp": iotda_amqp_path,
}


async def _count(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM readings"))


async def measure(name: str, items: list[Reading], timeout_s: float) -> dict[str, Any]:
    db = await fresh_db()
    try:
        async with PATHS[name](items, db) as consumer:
            async with serving(consumer.settings) as (_app, base), httpx.AsyncClient(
                base_url=base, timeout=30, headers={"Authorization": f"Bearer {ADMIN}"}
            ) as http:
                conn = await asyncpg.connect(db)
                try:
                    await consumer.start(http)
                    deadline = time.monotonic() + timeout_s
                    first_at, first_n = 0.0, 0
                    while (n := await _count(conn)) < len(items):
                        if n and not first_at:
                            first_at, first_n = time.perf_counter(), n
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"{name}: {n} of {len(items)} readings stored after {timeout_s} s")
                        await asyncio.sleep(0.02)
                    elapsed = time.perf_counter() - first_at
                    load = os.getloadavg()
                    distinct = int(await conn.fetchval("SELECT count(DISTINCT (device_id, ts)) FROM readings"))
                finally:
                    await conn.close()
        return {"readings_per_s": round((len(items) - first_n) / elapsed), "seconds": round(elapsed, 2),
                "stored": n, "distinct": distinct, "load_average_at_end": load}
    finally:
        await drop_db(db)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--readings", type=int, default=20_000)
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated, of {', '.join(PATHS)}")
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args()
    items = readings(args.readings, args.devices)
    before = os.getloadavg()
    results = {name: await measure(name, items, args.timeout) for name in args.paths.split(",")}
    print(json.dumps({
        "benchmark": "subscription_throughput", "readings": args.readings, "devices": args.devices,
        "paths": results, "load_average": {"before": before, "after": os.getloadavg()},
        "cpus": os.cpu_count(),
    }, indent=2))


if __name__ == "__main__":
    asyncio.run(main())

"""Reconnect storm at province scale (issue 21): a whole NB cell group comes back after an outage,
with background telemetry, through MQTT and HTTP push, while a fire scenario plays.

A fresh database gets `--devices` registered devices (default 1,000,000, in 100,000 units) and a
checkpoint: the `--outage` devices of the cell group (cells `OUT<n>`, 500 devices each, smoke
detectors with an hourly heartbeat) were last heard 3 hours ago, every other device (daily
heartbeat) recently. (A short heartbeat would send the group offline again during the drain.)
`miaoxiang serve` starts in a subprocess (private Mosquitto with unbounded queues, this
machine's PostgreSQL); its first sweeps declare the group offline and raise one
`network_outage` alarm per cell. Then the storm: `--storm` single reports (default 200,000:
every device of the group once, and background devices once each) within `--storm-s` (default
120 s), rate-controlled, from MQTT publisher processes (QoS 1) and an HTTP pusher process
(CTWing `dataReport`s through the `ctwing-smoke` profile, token in the query; `--push-share` of
the reports). Meanwhile `--alarms` smoke alarms of other detectors (the fire scenario) are
published on `evt`, evenly over the storm, and timed from publish to their event on the SSE
stream.

Reported: the storm rate reached, push latency, drain time (storm start until every report is
in `readings`), readings lost (sent and not stored), offline -> online transitions (outage alarms
cleared, devices of the group still offline), fire alarm latency p50/p99, the service's RSS and
peak RSS, start-up time, and the load average around every phase. Goals: fire alarm p99 <= 200
ms during the storm, 0 lost, every outage alarm cleared. Prints one JSON object.

    python benchmarks/storm.py [--devices 1000000 --outage 150000 --storm 200000 --storm-s 120 --alarms 100]
    python benchmarks/storm.py --devices 20000 --outage 3000 --storm 4000 --storm-s 10 --alarms 10  # smoke
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import queue
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiomqtt
import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from alarm_latency import ADMIN, StreamClock, percentiles
from bench_db import drop_db, fresh_db
from fleet_api import FILL, REGIONS, loadavg, rss_mb, stop, wait_ready
from mqtt_broker import private_mosquitto

from ingest.transports.mqtt import BrokerConfig
from miaoxiang.embedded import free_port
from miaoxiang.migrate import migrate
from miaoxiang.settings import DEFAULT_MIGRATIONS_DIR

TOKEN = ADMIN["Authorization"].removeprefix("Bearer ")  # the stream reader's
PUSH_TOKEN = "storm-t0ken"
CELL_SIZE = 500
IMEI0 = 868120000000000
#: MQTT publisher processes, and concurrent publishes in each (one PUBACK round trip does not pace it).
PUBLISHERS, LANES = 3, 16
PUSH_CONNECTIONS = 16
PUSH_TRIES = 3

# Devices d < outage: the cell group; then the background devices of the storm; then the fire
# scenario's detectors; all smoke detectors (the push profile's kind). The rest as fleet_api.py.
# Devices outside the group report daily: none goes offline during the run.
DEVICES = """
INSERT INTO devices (device_id, kind, unit_id, cell_id, heartbeat_s)
SELECT lpad((868120000000000 + d)::text, 15, '0'),
       CASE WHEN d < $3 THEN 'smoke'
            ELSE (ARRAY['smoke','smoke','smoke','smoke','smoke','smoke','smoke','smoke','smoke','smoke','smoke',
                        'gas','gas','gas','gas','electrical','electrical','electrical','water','uitd'])[1 + d % 20] END,
       'U' || (d % $2),
       CASE WHEN d < $4 THEN 'OUT' || (d / 500) ELSE upper(to_hex(d % 2000)) END,
       CASE WHEN d < $4 THEN 3600 ELSE 86400 END
FROM generate_series(0, $1 - 1) AS d;
"""
STATE = """
INSERT INTO device_state (device_id, last_seen, status, battery_pct, rsrp_dbm, last_values, flags)
SELECT device_id,
       CASE WHEN device_id::bigint - 868120000000000 < $1 THEN now() - interval '3 hours' - random() * interval '30 s'
            ELSE now() - random() * interval '4 minutes' END,
       'online', 80, -95,
       jsonb_build_object('values', jsonb_build_object(
           'battery_pct', jsonb_build_object('value', 80, 'ts_ms', 1795341600000),
           'rsrp_dbm', jsonb_build_object('value', -95, 'ts_ms', 1795341600000)), 'last_ts_ms', 1795341600000), 1
FROM devices;
"""


def imei(d: int) -> str:
    return f"{IMEI0 + d:015d}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def fill(url: str, args: argparse.Namespace) -> float:
    started = time.perf_counter()
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn, DEFAULT_MIGRATIONS_DIR)
        await conn.execute(FILL, args.units, REGIONS)
        smoke = args.outage + args.background + args.alarms
        await conn.execute(DEVICES, args.devices, args.units, smoke, args.outage)
        await conn.execute(STATE, args.outage)
        await conn.execute("INSERT INTO push_sources (name, platform, secret, profile, rate_per_s)"
                           " VALUES ('ctw', 'ctwing', $1, 'ctwing-smoke', 1e9)", PUSH_TOKEN)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return time.perf_counter() - started


# --- traffic ------------------------------------------------------------------------------------
def storm_devices(args: argparse.Namespace) -> list[int]:
    """Who reports in the storm: every device of the group, then background devices, interleaved
    so that both kinds arrive throughout."""
    group = list(range(args.outage))
    background = list(range(args.outage, args.outage + args.background))
    out: list[int] = []
    step = max(1, len(group) // max(1, len(background)))
    for i, d in enumerate(group):
        out.append(d)
        if i % step == step - 1 and background:
            out.append(background.pop())
    return out + background


async def _ready(out: Any, go: Any) -> None:
    """Say this sender is connected, then wait for every other one (the storm's clock starts then)."""
    out.put(("ready",))
    await asyncio.to_thread(go.wait, 600)


def _mqtt_child(url: str, root: str, devices: list[int], rate: float, out: Any, go: Any) -> None:
    asyncio.run(_mqtt_share(url, root, devices, rate, out, go))


async def _mqtt_share(url: str, root: str, devices: list[int], rate: float, out: Any, go: Any) -> None:
    cfg = BrokerConfig.from_url(url)
    sent = 0
    async with aiomqtt.Client(cfg.host, cfg.port, max_inflight_messages=1000) as client:
        await _ready(out, go)
        started = time.perf_counter()

        async def lane(k: int) -> None:
            nonlocal sent
            for i in range(k, len(devices), LANES):
                due = started + i / rate
                if (wait := due - time.perf_counter()) > 0:
                    await asyncio.sleep(wait)
                device = imei(devices[i])
                payload = json.dumps({"device_id": device, "kind": "smoke", "ts": now_ms(), "seq": 1,
                                      "event": "heartbeat", "data": {"battery_pct": 77, "rsrp_dbm": -96}}).encode()
                await client.publish(f"{root}/tel/smoke/{device}", payload, qos=1)
                sent += 1

        async with asyncio.TaskGroup() as tg:
            for k in range(LANES):
                tg.create_task(lane(k))
        out.put(("mqtt", sent, 0, time.perf_counter() - started, []))  # (sender, ok, failed, seconds, latencies)


def ctwing_body(device: str, ts: int) -> bytes:
    return json.dumps({
        "upPacketSN": -1, "upDataSN": -1, "topic": "v1/up/ad", "timestamp": ts, "tenantId": "2000012345",
        "serviceId": "", "protocol": "lwm2m", "productId": "15017088", "messageType": "dataReport",
        "deviceType": "", "deviceId": f"15017088{device}", "IMEI": device, "IMSI": "460113003141592",
        "payload": {"serviceData": {"Alarm_Status": 0, "Battery_Level": 77, "RSRP": 96, "SINR": 5, "ECL": 0}},
    }).encode()


def _push_child(base: str, devices: list[int], rate: float, out: Any, go: Any) -> None:
    asyncio.run(_push_share(base, devices, rate, out, go))


async def _push_share(base: str, devices: list[int], rate: float, out: Any, go: Any) -> None:
    """CTWing pushes at `rate`, each answered 200 only after its reading is committed. A push whose
    connection fails is sent again, as a platform does (at most `PUSH_TRIES` times; the service
    deduplicates a copy already stored); `failed` counts those never answered 200."""
    ok = failed = retried = 0
    latency: list[float] = []
    limits = httpx.Limits(max_connections=PUSH_CONNECTIONS, max_keepalive_connections=PUSH_CONNECTIONS)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:
        await _ready(out, go)
        started = time.perf_counter()

        async def lane(k: int) -> None:
            nonlocal ok, failed, retried
            for i in range(k, len(devices), PUSH_CONNECTIONS):
                due = started + i / rate
                if (wait := due - time.perf_counter()) > 0:
                    await asyncio.sleep(wait)
                body = ctwing_body(imei(devices[i]), now_ms())
                for attempt in range(PUSH_TRIES):
                    t0 = time.perf_counter()
                    try:
                        r = await http.post(f"/api/v1/ingest/push/ctw?token={PUSH_TOKEN}", content=body,
                                            headers={"Content-Type": "application/json"})
                    except httpx.TransportError:
                        retried += attempt < PUSH_TRIES - 1
                        continue
                    latency.append(1000 * (time.perf_counter() - t0))
                    if r.status_code == 200:
                        ok += 1
                        break
                    retried += attempt < PUSH_TRIES - 1
                else:
                    failed += 1

        async with asyncio.TaskGroup() as tg:
            for k in range(PUSH_CONNECTIONS):
                tg.create_task(lane(k))
        out.put(("push", ok, failed, time.perf_counter() - started, latency, retried))


async def collect(out: Any, procs: list[Any], timeout_s: float) -> list[tuple[Any, ...]]:
    """Each sender's result; raises when one died without giving it, or after `timeout_s`."""
    results: list[tuple[Any, ...]] = []
    deadline = time.monotonic() + timeout_s
    while len(results) < len(procs):
        try:
            results.append(await asyncio.to_thread(out.get, True, 1.0))
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"a sender failed (exit codes {dead}) or the storm ran past {timeout_s} s") from None
    return results


async def fire(root: str, url: str, devices: list[int], gap_s: float) -> dict[str, float]:
    """The fire scenario: one smoke alarm every `gap_s` on `evt`; answers when each was published."""
    cfg = BrokerConfig.from_url(url)
    sent: dict[str, float] = {}
    async with aiomqtt.Client(cfg.host, cfg.port) as client:
        for i, d in enumerate(devices):
            device = imei(d)
            payload = json.dumps({"device_id": device, "kind": "smoke", "ts": now_ms(), "seq": 1000 + i,
                                  "event": "alarm", "data": {"smoke_obscuration_pct_m": 4.2, "temperature_c": 58}})
            sent[device] = time.perf_counter()
            await client.publish(f"{root}/evt/smoke/{device}", payload.encode(), qos=1)
            await asyncio.sleep(gap_s)
    return sent


async def wait_for(conn: asyncpg.Connection, query: str, until: Any, timeout_s: float, *args: Any) -> float:
    """Poll `query` until `until(value)`; answer the seconds it took (raises TimeoutError)."""
    started = time.perf_counter()
    async with asyncio.timeout(timeout_s):
        while not until(await conn.fetchval(query, *args)):
            await asyncio.sleep(0.25)
    return time.perf_counter() - started


OPEN_OUTAGES = "SELECT count(*) FROM alarms WHERE type = 'network_outage' AND status IN ('active_unack', 'active_ack')"
CLEARED_OUTAGES = "SELECT count(*) FROM alarms WHERE type = 'network_outage' AND cleared_at IS NOT NULL"


async def storm(args: argparse.Namespace, mqtt_url: str, root: str, base: str, pid: int,
                conn: asyncpg.Connection) -> dict[str, Any]:
    reporting = storm_devices(args)
    pushed = [d for i, d in enumerate(reporting) if args.push_share and i % round(1 / args.push_share) == 0]
    pushed_set = set(pushed)
    mqtt_devices = [d for d in reporting if d not in pushed_set]
    fire_devices = list(range(args.outage + args.background, args.outage + args.background + args.alarms))
    ctx = multiprocessing.get_context("spawn")
    out, go = ctx.Queue(), ctx.Event()
    shares = [mqtt_devices[k::PUBLISHERS] for k in range(PUBLISHERS)]
    procs = [ctx.Process(target=_mqtt_child, args=(mqtt_url, root, share, len(share) / args.storm_s, out, go))
             for share in shares if share]
    if pushed:
        procs.append(ctx.Process(target=_push_child, args=(base, pushed, len(pushed) / args.storm_s, out, go)))
    stream = StreamClock()
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        reader = asyncio.create_task(stream.run(http))
        await stream.ready.wait()
        for proc in procs:
            proc.start()
        for _ in procs:
            await asyncio.to_thread(out.get, True, 120)  # connected
        load_before = loadavg()
        readings_before = await conn.fetchval("SELECT count(*) FROM readings")
        started = time.perf_counter()
        go.set()
        fire_sent = await fire(root, mqtt_url, fire_devices, args.storm_s / max(1, args.alarms))
        load_during = loadavg()
        results = await collect(out, procs, args.storm_s + 600)
        sent_s = time.perf_counter() - started
        for proc in procs:
            await asyncio.to_thread(proc.join, 10)
        mqtt_sent = sum(r[1] for r in results if r[0] == "mqtt")
        push = next((r for r in results if r[0] == "push"), ("push", 0, 0, 0.0, [], 0))
        expected = readings_before + mqtt_sent + push[1] + len(fire_sent)
        try:
            drain_s = sent_s + await wait_for(conn, "SELECT count(*) FROM readings", lambda n: n >= expected,
                                              args.drain_timeout_s)
        except TimeoutError:
            drain_s = None
        stored = await conn.fetchval("SELECT count(*) FROM readings") - readings_before
        with contextlib.suppress(TimeoutError):  # an alarm not streamed counts as missing
            async with asyncio.timeout(30):
                while any(d not in stream.first_seen for d in fire_sent):
                    await asyncio.sleep(0.05)
        reader.cancel()
        cells = -(-args.outage // CELL_SIZE)
        try:
            with_timeout = await wait_for(conn, CLEARED_OUTAGES, lambda n: n >= cells, 60)
        except TimeoutError:
            with_timeout = None
        overview = (await http.get("/api/v1/stats/overview", headers=ADMIN)).json()
    fire_ms = percentiles([1000 * (stream.first_seen[d] - t) for d, t in fire_sent.items() if d in stream.first_seen])
    return {
        "reports": {"mqtt": mqtt_sent, "push_ok": push[1], "push_failed": push[2], "push_retried": push[5],
                    "fire_alarms": len(fire_sent), "stored": stored},
        "lost": mqtt_sent + push[1] + len(fire_sent) - stored,
        "sent_in_s": round(sent_s, 1),
        "sender_seconds": {"mqtt": round(max((r[3] for r in results if r[0] == "mqtt"), default=0), 1),
                           "push": round(push[3], 1)},
        "rate_reached_per_s": round((mqtt_sent + push[1]) / sent_s),
        "push_latency_ms": percentiles(push[4]),
        "drain_s": None if drain_s is None else round(drain_s, 1),
        "outage_alarms_cleared": await conn.fetchval(CLEARED_OUTAGES),
        "outage_alarms_open": await conn.fetchval(OPEN_OUTAGES),
        "outage_clear_wait_s": None if with_timeout is None else round(with_timeout, 1),
        "offline_devices_left": overview["offline"],
        "fire_alarms_streamed": f"{sum(d in stream.first_seen for d in fire_sent)} of {len(fire_sent)}",
        "fire_alarm_publish_to_sse_ms": fire_ms,
        "service_rss_mb": round(rss_mb(pid), 1),
        "service_peak_rss_mb": round(rss_mb(pid, "VmHWM"), 1),
        "loadavg": {"before": load_before, "during": load_during, "after": loadavg()},
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=1_000_000)
    ap.add_argument("--units", type=int, default=100_000)
    ap.add_argument("--outage", type=int, default=150_000, help="devices of the cell group (500 a cell)")
    ap.add_argument("--storm", type=int, default=200_000, help="reports in the storm: the group and background")
    ap.add_argument("--storm-s", type=float, default=120.0, help="the storm is sent within this")
    ap.add_argument("--push-share", type=float, default=0.2, help="share of the storm sent by HTTP push")
    ap.add_argument("--alarms", type=int, default=100, help="fire scenario alarms during the storm")
    ap.add_argument("--drain-timeout-s", type=float, default=600.0)
    args = ap.parse_args()
    args.units = min(args.units, args.devices)
    args.background = args.storm - args.outage
    if args.background < 0 or args.outage + args.background + args.alarms > args.devices:
        ap.error("need --outage <= --storm and --storm + --alarms <= --devices")
    url = await fresh_db(migrated=False)
    prefix = f"mxbench/{uuid.uuid4().hex[:6]}"
    try:
        print(f"filling {args.devices} devices ...", file=sys.stderr, flush=True)
        fill_s = await fill(url, args)
        with private_mosquitto() as mqtt_url:
            port = free_port()
            env = {**os.environ, "MIAOXIANG_DATABASE_URL": url, "MIAOXIANG_MQTT_URL": mqtt_url,
                   "MIAOXIANG_HTTP_PORT": str(port), "MIAOXIANG_GB26875_ENABLED": "false",
                   "MIAOXIANG_ADMIN_TOKEN": TOKEN, "MIAOXIANG_LOG_LEVEL": "WARNING",
                   "MIAOXIANG_TOPIC_PREFIX": prefix, "MIAOXIANG_MIGRATIONS_DIR": str(DEFAULT_MIGRATIONS_DIR),
                   "MIAOXIANG_MQTT_CLIENT_ID": f"bench-{uuid.uuid4().hex[:6]}"}
            base = f"http://127.0.0.1:{port}"
            load_start = loadavg()
            started = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-m", "miaoxiang.cli", "serve"], env=env)
            conn = await asyncpg.connect(url)
            try:
                await wait_ready(base, proc)
                start_s = time.perf_counter() - started
                rss_ready = rss_mb(proc.pid)
                cells = -(-args.outage // CELL_SIZE)
                outage_s = await wait_for(conn, OPEN_OUTAGES, lambda n: n >= cells, 120)
                figures = await storm(args, mqtt_url, f"{prefix}/default", base, proc.pid, conn)
            finally:
                await conn.close()
                stop(proc)
    finally:
        await drop_db(url)
    fire = figures["fire_alarm_publish_to_sse_ms"]
    fire_p99 = fire.get("p99", float("inf")) if fire.get("n") == args.alarms else float("inf")
    result = {
        "benchmark": "storm",
        "devices": args.devices,
        "outage_devices": args.outage,
        "outage_cells": cells,
        "storm_reports": args.storm,
        "storm_s": args.storm_s,
        "fill_s": round(fill_s, 1),
        "startup_to_ready_s": round(start_s, 2),
        "startup_loadavg": load_start,
        "rss_at_ready_mb": round(rss_ready, 1),
        "outage_alarms_raised_after_ready_s": round(outage_s, 1),
        **figures,
        "goals": {"fire_alarm_p99_ms": 200, "lost": 0, "outage_alarms_cleared": cells},
        "goals_met": {"fire_alarm_p99": fire_p99 <= 200, "no_loss": figures["lost"] == 0,
                      "drained": figures["drain_s"] is not None,
                      "outages_cleared": figures["outage_alarms_open"] == 0
                      and figures["outage_alarms_cleared"] >= cells},
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    asyncio.run(main())

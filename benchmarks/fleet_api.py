"""The real service over a registry of 1,000,000 devices: start-up load from PostgreSQL, memory,
and HTTP API latency (device list, filtered lists, detail, stats) through a real client.

A fresh database gets 100,000 units and 1,000,000 devices (smoke, gas, electrical, water, uitd)
written by `generate_series` and a `device_state` checkpoint for every device (all heard in the last 4 minutes), then
`miaoxiang serve` starts in a subprocess on the machine's PostgreSQL with a private broker; the
clock runs from the spawn to /readyz answering. Each route is timed over repeated requests by
httpx on loopback. Prints one JSON object; goals: start <= 15 s, RSS <= 1.5 GB.

    python benchmarks/fleet_api.py [--devices 1000000 --units 100000 --requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_db import drop_db, fresh_db
from mqtt_broker import private_mosquitto

from miaoxiang.embedded import free_port
from miaoxiang.migrate import migrate
from miaoxiang.settings import DEFAULT_MIGRATIONS_DIR

TOKEN = "bench-admin-token"
REGIONS = [
    f"江西省/赣州市/{d}/{s}" for d in ("章贡区", "南康区", "赣县区", "信丰县") for s in ("一街道", "二街道", "三街道")
]

FILL = """
INSERT INTO units (unit_id, name, region, industry)
SELECT 'U' || u, '单位 ' || u, ($2::text[])[1 + u % array_length($2::text[], 1)],
       (ARRAY['residential','commercial','hospital','school','nine_small'])[1 + u % 5]
FROM generate_series(0, $1 - 1) AS u;
"""
DEVICES = """
INSERT INTO devices (device_id, kind, unit_id, cell_id, heartbeat_s)
SELECT lpad((868120000000000 + d)::text, 15, '0'),
       (ARRAY['smoke','smoke','smoke','smoke','smoke','smoke','smoke','smoke','smoke','smoke','smoke',
              'gas','gas','gas','gas','electrical','electrical','electrical','water','uitd'])[1 + d % 20],
       'U' || (d % $2), upper(to_hex(d % 2000)), NULL
FROM generate_series(0, $1 - 1) AS d;
"""
STATE = """
INSERT INTO device_state (device_id, last_seen, status, battery_pct, rsrp_dbm, last_values, flags)
SELECT device_id, now() - (random() * interval '4 minutes'), 'online', 60 + random() * 40, -80 - random() * 30,
       jsonb_build_object('values', jsonb_build_object(
           'battery_pct', jsonb_build_object('value', 80, 'ts_ms', 1795341600000),
           'rsrp_dbm', jsonb_build_object('value', -95, 'ts_ms', 1795341600000)),
           'last_ts_ms', 1795341600000), 0
FROM devices;
"""


async def fill(url: str, devices: int, units: int) -> float:
    started = time.perf_counter()
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn, DEFAULT_MIGRATIONS_DIR)
        await conn.execute(FILL, units, REGIONS)
        await conn.execute(DEVICES, devices, units)
        await conn.execute(STATE)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return time.perf_counter() - started


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout_s: float = 300) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=2) as http:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the service exited with {proc.returncode}")
            try:
                if (await http.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError("the service did not become ready")


async def latency(http: httpx.AsyncClient, path: str, n: int) -> dict[str, float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = await http.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 200:
            raise RuntimeError(f"{path} answered {r.status_code}: {r.text[:200]}")
    times.sort()
    return {"p50_ms": round(statistics.median(times), 2), "p99_ms": round(times[int(len(times) * 0.99) - 1], 2)}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=1_000_000)
    ap.add_argument("--units", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    url = await fresh_db(migrated=False)  # `fill` migrates
    try:
        print(f"filling {args.devices} devices in {args.units} units ...", file=sys.stderr, flush=True)
        fill_s = await fill(url, args.devices, args.units)
        with private_mosquitto() as mqtt_url:
            port = free_port()
            env = {**os.environ, "MIAOXIANG_DATABASE_URL": url, "MIAOXIANG_MQTT_URL": mqtt_url,
                   "MIAOXIANG_HTTP_PORT": str(port), "MIAOXIANG_GB26875_ENABLED": "false",
                   "MIAOXIANG_ADMIN_TOKEN": TOKEN, "MIAOXIANG_LOG_LEVEL": "WARNING",
                   "MIAOXIANG_MQTT_CLIENT_ID": f"bench-{uuid.uuid4().hex[:6]}"}
            started = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-m", "miaoxiang.cli", "serve"], env=env)
            try:
                base = f"http://127.0.0.1:{port}"
                await wait_ready(base, proc)
                start_s = time.perf_counter() - started
                print(f"ready after {start_s:.1f} s; timing the API ...", file=sys.stderr, flush=True)
                headers = {"Authorization": f"Bearer {TOKEN}"}
                async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
                    page = (await http.get("/api/v1/devices", params={"limit": 100})).json()
                    deep_params = {"limit": 100, "cursor": page["next_cursor"]}
                    deep = (await http.get("/api/v1/devices", params=deep_params)).json()
                    routes = {
                        "devices_first_page": "/api/v1/devices?limit=100",
                        "devices_next_page": f"/api/v1/devices?limit=100&cursor={deep['next_cursor']}",
                        "devices_kind_gas": "/api/v1/devices?kind=gas&limit=100",
                        "devices_region_district": "/api/v1/devices?region=江西省/赣州市/南康区&limit=100",
                        "devices_unit": "/api/v1/devices?unit_id=U4242&limit=100",
                        "device_detail": f"/api/v1/devices/{page['items'][7]['device_id']}",
                        "stats_overview": "/api/v1/stats/overview",
                    }
                    figures = {
                        k: await latency(http, v, args.requests if "stats" not in k else 20) for k, v in routes.items()
                    }
                rss = rss_mb(proc.pid)
            finally:
                proc.terminate()
                proc.wait(30)
    finally:
        await drop_db(url)
    print(json.dumps({
        "benchmark": "fleet_api",
        "devices": args.devices,
        "units": args.units,
        "fill_s": round(fill_s, 1),
        "startup_to_ready_s": round(start_s, 2),
        "rss_mb": round(rss, 1),
        "latency": figures,
        "goals": {"startup_to_ready_s": 15, "rss_mb": 1536},
        "goals_met": {"startup": start_s <= 15, "rss": rss <= 1536},
    }, indent=2))


if __name__ == "__main__":
    asyncio.run(main())

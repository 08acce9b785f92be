"""The real service over a registry of 1,000,000 devices: start-up load from PostgreSQL, memory,
and HTTP API latency (device list, filtered lists, detail, stats) through a real client.

A fresh database gets 100,000 units and 1,000,000 devices (smoke, gas, electrical, water, uitd)
written by `generate_series` and a `device_state` checkpoint for every device (all heard in the last 4 minutes), then
`miaoxiang serve` starts in a subprocess on the machine's PostgreSQL with a private broker; the
clock runs from the spawn to /readyz answering, and the service's peak RSS (`VmHWM`) is read
then. The first start-up reads every `device_state` row (as after an upgrade from a build without
the fleet snapshot) and writes the snapshot when it stops; the timed rounds start from it.
Each route is timed over repeated requests by httpx on loopback. With `--before DIR` (a
`git worktree` of an earlier commit) every round first starts that build's `src` on the same
database, so a change is measured against its predecessor on one machine at one load. Prints one
JSON object; goals (issue 21): start <= 10 s, peak RSS <= 1.5 GB.

    python benchmarks/fleet_api.py [--devices 1000000 --units 100000 --requests 200 --rounds 1 --before DIR]
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
from typing import Any

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


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory now (`VmRSS`) or at its peak (`VmHWM`), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


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


async def start(env: dict[str, str], port: int, src: Path | None) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Spawn `miaoxiang serve` (from `src` when given) and wait for /readyz; answer the process and
    its start-up figures: seconds to ready, RSS and peak RSS then, the load average around it."""
    if src is not None:  # PYTHONPATH comes before the editable install's finder
        env = {**env, "PYTHONPATH": str(src)}
    load_before = loadavg()
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "miaoxiang.cli", "serve"], env=env)
    try:
        await wait_ready(f"http://127.0.0.1:{port}", proc)
    except BaseException:
        proc.terminate()
        proc.wait(30)
        raise
    start_s = time.perf_counter() - started
    figures = {"startup_to_ready_s": round(start_s, 2), "rss_at_ready_mb": round(rss_mb(proc.pid), 1),
               "peak_rss_mb": round(rss_mb(proc.pid, "VmHWM"), 1), "loadavg_before": load_before,
               "loadavg_after": loadavg()}
    print(f"{'before' if src else 'this build'}: {figures}", file=sys.stderr, flush=True)
    return proc, figures


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(60)


async def api_latency(base: str, requests: int) -> dict[str, dict[str, float]]:
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
        return {k: await latency(http, v, requests if "stats" not in k else 20) for k, v in routes.items()}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=1_000_000)
    ap.add_argument("--units", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=1, help="start-ups of each build (the API is timed after the last)")
    ap.add_argument("--before", type=Path, help="a checkout (git worktree) of the build to compare with")
    args = ap.parse_args()
    url = await fresh_db(migrated=False)  # `fill` migrates
    before: list[dict[str, Any]] = []
    after: list[dict[str, Any]] = []
    try:
        print(f"filling {args.devices} devices in {args.units} units ...", file=sys.stderr, flush=True)
        fill_s = await fill(url, args.devices, args.units)
        with private_mosquitto() as mqtt_url:
            port = free_port()
            # this build's migrations for both builds: the database was migrated with them
            env = {**os.environ, "MIAOXIANG_DATABASE_URL": url, "MIAOXIANG_MQTT_URL": mqtt_url,
                   "MIAOXIANG_HTTP_PORT": str(port), "MIAOXIANG_GB26875_ENABLED": "false",
                   "MIAOXIANG_ADMIN_TOKEN": TOKEN, "MIAOXIANG_LOG_LEVEL": "WARNING",
                   "MIAOXIANG_MIGRATIONS_DIR": str(DEFAULT_MIGRATIONS_DIR),
                   "MIAOXIANG_MQTT_CLIENT_ID": f"bench-{uuid.uuid4().hex[:6]}"}
            proc, first = await start(env, port, None)  # from the rows; its stop writes the snapshot
            stop(proc)
            for r in range(args.rounds):
                if args.before is not None:
                    proc, figures = await start(env, port, args.before / "src")
                    stop(proc)
                    before.append(figures)
                proc, figures = await start(env, port, None)
                after.append(figures)
                try:
                    if r == args.rounds - 1:
                        latencies = await api_latency(f"http://127.0.0.1:{port}", args.requests)
                        rss = rss_mb(proc.pid)
                finally:
                    stop(proc)
    finally:
        await drop_db(url)
    start_s = statistics.median(f["startup_to_ready_s"] for f in after)
    peak = max(f["peak_rss_mb"] for f in after)
    result: dict[str, Any] = {
        "benchmark": "fleet_api",
        "devices": args.devices,
        "units": args.units,
        "fill_s": round(fill_s, 1),
        "startup_to_ready_s": start_s,
        "first_startup_from_rows": first,
        "peak_rss_mb": peak,
        "rss_mb": round(rss, 1),
        "rounds": after,
        "latency": latencies,
        "goals": {"startup_to_ready_s": 10, "peak_rss_mb": 1536},
        "goals_met": {"startup": start_s <= 10, "peak_rss": peak <= 1536},
    }
    if before:
        result["before"] = {"build": str(args.before), "rounds": before,
                            "startup_ratio_after_to_before": [
                                round(a["startup_to_ready_s"] / b["startup_to_ready_s"], 3)
                                for a, b in zip(after, before)]}
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    asyncio.run(main())

"""Bulk device import: 100,000 devices from one CSV into a fresh database (goal: under 30 s).

Measures `devices.importer.import_devices` as `POST /api/v1/devices/import` runs it: parse and
validate every row, COPY into a staging table, one INSERT ... ON CONFLICT, then the fleet.
A second run of the same file measures re-import (every row an update). Progress goes to
stderr; one JSON object to stdout.

    python benchmarks/import_devices.py [--devices 100000] [--units 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import sys
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_db import drop_db, fresh_db

from devices.commands import CommandService
from devices.fleet import Fleet
from devices.importer import print_progress
from devices.registry import UnitSpec, upsert_unit
from devices.service import DeviceService

KINDS = ("smoke", "smoke", "smoke", "gas", "gas", "electrical", "water")


def devices_csv(n: int, units: int) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["device_id", "kind", "unit_id", "location", "heartbeat_s", "thresholds", "cell_id"])
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        thresholds = json.dumps({"gas_lel_pct": 8}) if kind == "gas" else ""
        w.writerow([f"8681203{i:08d}", kind, f"U{i % units:05d}", f"{i % 30 + 1}F room {i % 17}",
                    300 if kind == "electrical" else "", thresholds, f"{0x1A2B00 + i % 4000:X}"])
    return buf.getvalue()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--units", type=int, default=2000)
    args = ap.parse_args()
    url = await fresh_db()
    try:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        async with pool.acquire() as conn:
            for u in range(args.units):
                await upsert_unit(conn, UnitSpec.parse({
                    "unit_id": f"U{u:05d}", "name": f"unit {u}",
                    "region": f"江西省/赣州市/{('章贡区', '南康区', '赣县区')[u % 3]}/街道{u % 40}"}))
        fleet = Fleet()
        commands = CommandService(pool, fleet, _no_publish, topic_root="mxbench", clock=lambda: 0)
        svc = DeviceService(pool, fleet, commands, clock=lambda: 0)
        text = devices_csv(args.devices, args.units)
        started = time.perf_counter()
        first = await svc.import_devices(text, "csv", print_progress)
        first_s = time.perf_counter() - started
        started = time.perf_counter()
        again = await svc.import_devices(text, "csv", print_progress)
        again_s = time.perf_counter() - started
        stored = await pool.fetchval("SELECT count(*) FROM devices")
        await pool.close()
    finally:
        await drop_db(url)
    print(json.dumps({
        "benchmark": "import_devices",
        "devices": args.devices,
        "csv_bytes": len(text.encode()),
        "seconds": round(first_s, 3),
        "rows_per_s": round(args.devices / first_s),
        "created": first.created,
        "rejected": first.rejected,
        "reimport_seconds": round(again_s, 3),
        "reimport_rows_per_s": round(args.devices / again_s),
        "reimport_updated": again.updated,
        "stored": stored,
        "fleet_size": fleet.size,
        "goals": {"seconds": 30},
    }, indent=2))


async def _no_publish(topic: str, payload: bytes) -> None:
    raise RuntimeError("the import benchmark sends no commands")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(130)

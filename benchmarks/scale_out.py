"""Ingest throughput of the real service as separate processes: one process, then N `$share`
workers with partitioned correlation plus the `api` process (docs/scale-out.md).

Each setup gets a fresh database with the devices registered (units of 20) and a private
Mosquitto (TCP_NODELAY, unbounded queues). Its processes are started once so that their
persistent sessions and shared subscriptions exist, stopped, the backlog is published while they
are away, then they are started again; `mx_ingest_written_total` (summed over the workers) is
sampled every 20 ms. The rate is taken between 10 % and 90 % of the backlog written, so process
start-up does not count; `drain_s` is spawn to everything committed. Also each process's RSS.
On a machine with fewer cores than processes the N-worker figure shows the cost of the hand-off,
not the gain. Prints one JSON object.

    python benchmarks/scale_out.py [--messages 30000] [--workers 2] [--devices 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiomqtt
import asyncpg
import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_db import drop_db, fresh_db
from mqtt_broker import private_mosquitto

from ingest.transports.mqtt import BrokerConfig
from miaoxiang.embedded import free_port

MIAOXIANG = str(Path(sys.executable).parent / "miaoxiang")
TS0 = 1_795_341_600_000


def device(i: int) -> str:
    return f"86812040{i:07d}"


async def registered_db(devices: int) -> str:
    """A fresh database with the benchmark's devices registered in units of 20."""
    url = await fresh_db(prefix="mxbench_so")
    conn = await asyncpg.connect(url)
    await conn.execute(
        "INSERT INTO units (unit_id, name) SELECT 'U' || u, 'unit ' || u FROM generate_series(0, $1 - 1) u",
        (devices + 19) // 20,
    )
    await conn.executemany("INSERT INTO devices (device_id, kind, unit_id) VALUES ($1, 'smoke', $2)",
                           [(device(i), f"U{i // 20}") for i in range(devices)])
    await conn.close()
    return url


class Proc:
    """`miaoxiang serve` with MIAOXIANG_* settings, on its own port."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MIAOXIANG_")} | env | {
            "MIAOXIANG_HTTP_PORT": str(self.port), "MIAOXIANG_HTTP_HOST": "127.0.0.1"}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([MIAOXIANG, "serve"], env=self.env, stdout=out, stderr=subprocess.STDOUT)

    async def ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1) as http:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"service exited: {self.log.read_text()[-2000:]}")
                try:
                    if (await http.get(f"http://127.0.0.1:{self.port}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"service not ready: {self.log.read_text()[-2000:]}")

    async def written(self, http: httpx.AsyncClient) -> float:
        text = (await http.get(f"http://127.0.0.1:{self.port}/metrics")).text
        return sum(
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("mx_ingest_written_total ")
        )

    def rss_mb(self) -> float:
        assert self.proc is not None
        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


async def publish_all(url: str, items: list[tuple[str, bytes]]) -> None:
    cfg = BrokerConfig.from_url(url)
    async with aiomqtt.Client(cfg.host, cfg.port, max_inflight_messages=1000) as c:
        for k in range(0, len(items), 500):
            await asyncio.gather(*(c.publish(t, p, qos=1) for t, p in items[k:k + 500]))


def processes(workers: int, env: dict[str, str], logs: Path) -> tuple[list[Proc], list[Proc]]:
    """(every process, those that ingest)."""
    if workers == 1:
        one = Proc(env, logs / "all.log")
        return [one], [one]
    scale = {**env, "MIAOXIANG_PARTITIONS": str(workers)}
    api = Proc({**scale, "MIAOXIANG_ROLE": "api"}, logs / "api.log")
    ingest = [Proc({**scale, "MIAOXIANG_ROLE": "worker", "MIAOXIANG_PARTITION_INDEX": str(i),
                    "MIAOXIANG_MQTT_SHARE_GROUP": "bench"}, logs / f"worker{i}.log") for i in range(workers)]
    return [api, *ingest], ingest


async def measure(workers: int, messages: int, devices: int, logs: Path) -> dict[str, object]:
    prefix = f"mxbench/{uuid.uuid4().hex[:6]}"
    items = [(f"{prefix}/default/tel/smoke/{device(i % devices)}", json.dumps({
        "ts": TS0 + i * 10, "seq": i % 65536, "event": "heartbeat",
        "data": {"battery_pct": 80 + i % 20, "rsrp_dbm": -90 - i % 20, "temperature_c": 21.5}}).encode())
        for i in range(messages)]
    db = await registered_db(devices)
    try:
        with private_mosquitto() as url:
            env = {"MIAOXIANG_DATABASE_URL": db, "MIAOXIANG_MQTT_URL": url, "MIAOXIANG_TOPIC_PREFIX": prefix,
                   "MIAOXIANG_MQTT_CLIENT_ID": f"bench-{workers}", "MIAOXIANG_GB26875_ENABLED": "false",
                   "MIAOXIANG_LOG_LEVEL": "WARNING", "MIAOXIANG_DATA_DIR": str(logs)}
            procs, ingest = processes(workers, env, logs)
            try:
                for p in procs:  # sessions and shared subscriptions first
                    p.start()
                    await p.ready()
                for p in reversed(procs):
                    p.stop()
                await publish_all(url, items)
                spawned = time.perf_counter()
                for p in procs:
                    p.start()
                marks: dict[float, float] = {}
                async with httpx.AsyncClient(timeout=5) as http:
                    await asyncio.gather(*(p.ready() for p in procs))
                    deadline = time.monotonic() + 300
                    while time.monotonic() < deadline:
                        done = sum([await p.written(http) for p in ingest])
                        now = time.perf_counter()
                        for frac in (0.1, 0.9, 1.0):
                            if done >= frac * messages and frac not in marks:
                                marks[frac] = now
                        if 1.0 in marks:
                            break
                        await asyncio.sleep(0.02)
                rss = {Path(p.log).stem: round(p.rss_mb(), 1) for p in procs}
            finally:
                for p in procs:
                    p.stop()
    finally:
        await drop_db(db)
    if 1.0 not in marks:
        return {"processes": len(procs), "error": f"only part of {messages} readings written in 300 s"}
    return {
        "processes": len(procs),
        "msgs_per_s": round(0.8 * messages / (marks[0.9] - marks[0.1])),
        "drain_s": round(marks[1.0] - spawned, 2),
        "rss_mb": rss,
    }


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=30_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--devices", type=int, default=5000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mx-bench-so-") as tmp:
        one = await measure(1, args.messages, args.devices, Path(tmp))
        many = await measure(args.workers, args.messages, args.devices, Path(tmp))
    out: dict[str, object] = {
        "benchmark": "scale_out",
        "messages": args.messages,
        "cpus": os.cpu_count(),
        "one_process": one,
        "workers": {"count": args.workers, **many},
    }
    if "msgs_per_s" in one and "msgs_per_s" in many:
        out["workers_vs_one"] = round(float(many["msgs_per_s"]) / float(one["msgs_per_s"]), 2)  # type: ignore[arg-type]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    asyncio.run(main())

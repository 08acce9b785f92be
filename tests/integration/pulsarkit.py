"""A pulsar-lite broker of the test's own (loopback ports, private data directory and config), a
producer of CTWing MQ messages, and what the subscription tests count in the database."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pulsar
import pytest

from devices.kinds import Event, Kind
from devices.reading import Reading
from miaoxiang.embedded import free_port
from simulators.envelopes import ctwing_request
from tests.integration.faultkit import VENV_BIN

PULSAR_LITE = VENV_BIN / "pulsar-lite"
TENANT_ID = "2000001"
LOG = logging.getLogger("pulsar")  # the C++ client logs to stdout otherwise
T0 = 1_795_341_600_000  # 2026-11-22


def _binary() -> Path:
    """The pulsar-lite broker binary: the wheel's, as its package finds it."""
    try:
        from pulsar_lite.binary_finder import find_pulsar_lite_binary
    except ImportError:
        pytest.skip("pulsar-lite is not installed (pip install -e '.[dev]')")
    return Path(find_pulsar_lite_binary())


@dataclass
class PulsarLite:
    """`pulsar-lite --config --addr --db-path` with its metrics on loopback too."""

    workdir: Path
    port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"pulsar://127.0.0.1:{self.port}"

    def start(self) -> None:
        config = self.workdir / "pulsar-lite.toml"
        config.write_text(f'[metrics]\naddr = "127.0.0.1:{self.metrics_port}"\n')
        log = open(self.workdir / "pulsar-lite.log", "ab")  # the child keeps it; closed here after the start
        self.proc = subprocess.Popen(
            [str(_binary()), "--config", str(config), "--addr", f"127.0.0.1:{self.port}",
             "--db-path", str(self.workdir / "data"), "--log-level", "warn"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
        )
        log.close()
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pulsar-lite exited with {self.proc.returncode}: {self.log()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.25):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"pulsar-lite not listening after 20 s: {self.log()[-2000:]}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        """Down and up again on the same port and data (what it stored survives)."""
        self.stop()
        self.start()

    def log(self) -> str:
        path = self.workdir / "pulsar-lite.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def pulsar_lite(workdir: Path) -> Iterator[PulsarLite]:
    workdir.mkdir(parents=True, exist_ok=True)
    broker = PulsarLite(workdir)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def topic(name: str) -> str:
    return f"persistent://aep-msgpush/{TENANT_ID}/{name}"


def source_body(name: str, broker: PulsarLite, topic_name: str, **config: object) -> dict[str, object]:
    """A `ctwing_mq` push source on the test broker (plain pulsar://, no token)."""
    return {"name": name, "platform": "ctwing_mq", "config": {
        "service_url": broker.url, "tenant_id": TENANT_ID, "topic": topic_name, "subscription": f"mx-{name}",
        "nack_redelivery_ms": 200, **config,
    }}


def imei(d: int) -> str:
    return f"8681203{d:08d}"


def envelope(d: int, seq: int) -> bytes:
    """CTWing `dataReport` of device `d`'s report `seq` (an MX1 frame in APPdata), as the HTTP push has it."""
    ts = T0 + seq * 1000 + d
    r = Reading(imei(d), Kind.smoke, Event.report, ts, ts, seq=seq % 60000, metrics={"battery_pct": 80})
    body, _ = ctwing_request(r, "unused", tenant_id=TENANT_ID)
    return body


def messages(devices: int, per_device: int) -> list[bytes]:
    return [envelope(d, seq) for seq in range(per_device) for d in range(devices)]


def publish(url: str, topic_name: str, bodies: list[bytes]) -> None:
    """Every body onto the topic, each stored by the broker before this returns."""
    client = pulsar.Client(url, operation_timeout_seconds=30, logger=LOG)
    try:
        producer = client.create_producer(topic(topic_name), batching_enabled=False, block_if_queue_full=True,
                                          max_pending_messages=2000)
        for body in bodies:
            producer.send_async(body, None)
        producer.flush()
        producer.close()
    finally:
        client.close()


def subscribe_now(url: str, topic_name: str, subscription: str) -> None:
    """Create the subscription before anything is published (as CTWing does when the MQ push is
    set up), so a backlog is kept for it."""
    client = pulsar.Client(url, logger=LOG)
    try:
        client.subscribe(topic(topic_name), subscription, consumer_type=pulsar.ConsumerType.Failover,
                         initial_position=pulsar.InitialPosition.Earliest).close()
    finally:
        client.close()


async def stored(db_url: str) -> tuple[int, int]:
    """(readings stored, distinct (device, device time) among them)."""
    conn = await asyncpg.connect(db_url)
    try:
        row = await conn.fetchrow("SELECT count(*) AS n, count(DISTINCT (device_id, ts)) AS d FROM readings")
        return int(row["n"]), int(row["d"])
    finally:
        await conn.close()

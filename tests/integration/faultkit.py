"""Real processes for fault tests: a private Mosquitto, a throwaway PostgreSQL cluster, the
service as a `miaoxiang serve` subprocess, a QoS 1 publisher that survives broker restarts, an
alarm stream reader, and outages of one database on a shared server (`DbOutage`).

Everything binds to 127.0.0.1 on spare ports; every process is stopped by its own handle.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import asyncpg
import httpx
import paho.mqtt.client as paho
import pytest

from miaoxiang.embedded import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
VENV_BIN = Path(sys.executable).parent
ADMIN_TOKEN = "fault-admin-token-9f3c1e"


def need(path: str | Path, what: str) -> None:
    if not Path(path).exists():
        pytest.skip(f"{what} not found at {path}")


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll until `predicate` answers something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            value = predicate()
            if value:
                return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# --- Mosquitto ----------------------------------------------------------------------------------
@dataclass
class Mosquitto:
    """A private broker with the settings a deployment needs for no loss (DESIGN.md)."""

    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> None:
        need(MOSQUITTO, "mosquitto")
        data = self.workdir
        conf = data / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {data}/\nautosave_interval 1\nmax_queued_messages 100000\n"
            "max_inflight_messages 1000\nset_tcp_nodelay true\nlog_dest stderr\nlog_type error\nlog_type warning\n"
        )
        log = open(self.log_path, "ab")  # closed with the process
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=log)
        log.close()
        wait_until(lambda: _port_open(self.port), 10, "mosquitto to listen")

    def stop(self) -> None:
        """SIGTERM: Mosquitto saves its persistence file on the way out."""
        _stop(self.proc)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def _port_open(port: int) -> bool:
    import socket

    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.3):
        return True
    return False


@contextlib.contextmanager
def private_dir(prefix: str, owner: str) -> Iterator[Path]:
    """A temp dir the given service user can reach when we are root (pytest's tmp_path is 0700
    all the way up, so a broker or database that drops privileges could not write there)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        if os.geteuid() == 0:
            with contextlib.suppress(LookupError):
                shutil.chown(path, owner, owner)
            path.chmod(0o700 if _has_user(owner) else 0o777)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@contextlib.contextmanager
def mosquitto() -> Iterator[Mosquitto]:
    with private_dir("mx-mosquitto-", "mosquitto") as workdir:
        broker = Mosquitto(workdir)
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()


# --- a throwaway PostgreSQL cluster -------------------------------------------------------------
@dataclass
class PgCluster:
    """initdb into a temp dir and pg_ctl on a spare port, as the postgres user when we are root;
    the machine's shared cluster is never touched."""

    workdir: Path
    port: int = field(default_factory=free_port)

    @property
    def datadir(self) -> Path:
        return self.workdir / "pgdata"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        need(PG_BIN / "initdb", "PostgreSQL initdb")
        if os.geteuid() == 0:
            need("/usr/sbin/runuser", "runuser")
        self._run(str(PG_BIN / "initdb"), "-D", str(self.datadir), "-U", "postgres", "-A", "trust", "--no-sync")

    def start(self) -> None:
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.workdir} -c fsync=off"
        pg_ctl, log = str(PG_BIN / "pg_ctl"), str(self.workdir / "pg.log")
        self._run(pg_ctl, "-D", str(self.datadir), "-o", opts, "-l", log, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop")


@contextlib.contextmanager
def pg_cluster() -> Iterator[PgCluster]:
    with private_dir("mx-pg-", "postgres") as workdir:
        cluster = PgCluster(workdir)
        cluster.init()
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop("immediate")


# --- the service as a subprocess ------------------------------------------------------------------
@dataclass
class Service:
    """`miaoxiang serve` in its own process, configured only by MIAOXIANG_* variables."""

    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_timeout: float = 60) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MIAOXIANG_")}
        env.update(self.env, MIAOXIANG_HTTP_PORT=str(self.port), MIAOXIANG_HTTP_HOST="127.0.0.1")
        log = open(self.log_path, "ab")  # closed with the process
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "miaoxiang"), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"service exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            return httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200

        deadline = time.monotonic() + ready_timeout
        while True:
            try:
                if ready():
                    return
            except RuntimeError:
                raise
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"service not ready after {ready_timeout}s:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        _stop(self.proc, timeout=15)
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(f"{self.base}{path}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=5, **kwargs)

    def metric(self, name: str) -> float:
        """Sum of a Prometheus metric's samples (all label sets)."""
        total = 0.0
        for line in httpx.get(f"{self.base}/metrics", timeout=5).text.splitlines():
            if line.startswith(name) and line[len(name)] in " {":
                total += float(line.rsplit(" ", 1)[1])
        return total


def service_env(*, database_url: str, mqtt_url: str, topic_prefix: str, client_id: str, **extra: str) -> dict[str, str]:
    env = {
        "MIAOXIANG_DATABASE_URL": database_url,
        "MIAOXIANG_MQTT_URL": mqtt_url,
        "MIAOXIANG_TOPIC_PREFIX": topic_prefix,
        "MIAOXIANG_MQTT_CLIENT_ID": client_id,  # the same across restarts: the persistent session
        "MIAOXIANG_ADMIN_TOKEN": ADMIN_TOKEN,
        "MIAOXIANG_GB26875_ENABLED": "false",
        "MIAOXIANG_BATCH_MS": "5",
        "MIAOXIANG_LOG_LEVEL": "INFO",
    }
    env.update({f"MIAOXIANG_{k.upper()}": v for k, v in extra.items()})
    return env


@contextlib.contextmanager
def service(env: dict[str, str], log_path: Path) -> Iterator[Service]:
    svc = Service(env, log_path)
    try:
        yield svc
    finally:
        svc.stop()


# --- a QoS 1 publisher that keeps going through broker restarts ---------------------------------
def report(device: str, seq: int, ts_ms: int, event: str = "heartbeat", **data: Any) -> bytes:
    return json.dumps({"ts": ts_ms, "seq": seq, "event": event, "data": {"battery_pct": 80, **data}}).encode()


class Publisher:
    """Publishes (topic, payload) pairs at QoS 1 in windows, republishing any message whose
    PUBACK did not arrive (broker down, connection lost): at-least-once from our side."""

    def __init__(self, port: int, window: int = 100) -> None:
        self.port = port
        self.window = window
        self.published = 0  # messages PUBACKed at least once
        self.attempts = 0
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"fault-pub-{time.monotonic_ns()}")
        self.client.reconnect_delay_set(0.1, 1)
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        wait_until(self.client.is_connected, 10, "the publisher to connect")

    def send(
        self, messages: list[tuple[str, bytes]], pace_s: float = 0.0, on_window: Callable[[int], None] | None = None
    ) -> None:
        for start in range(0, len(messages), self.window):
            pending = messages[start : start + self.window]
            while pending:
                infos = []
                for topic, payload in pending:
                    self.attempts += 1
                    infos.append(((topic, payload), self.client.publish(topic, payload, qos=1)))
                deadline = time.monotonic() + 3
                while time.monotonic() < deadline and not all(_acked(i) for _, i in infos):
                    time.sleep(0.01)
                pending = [m for m, i in infos if not _acked(i)]
                if pending:
                    time.sleep(0.2)
            self.published += min(self.window, len(messages) - start)
            if on_window is not None:
                on_window(self.published)
            if pace_s:
                time.sleep(pace_s)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _acked(info: paho.MQTTMessageInfo) -> bool:
    try:
        return info.is_published()
    except (RuntimeError, ValueError):  # not sent (no connection): publish it again
        return False


def in_thread(fn: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    """Run `fn` in a thread; errors are collected for the test to raise."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as e:  # handed to the test
            errors.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, errors


# --- the alarm stream -----------------------------------------------------------------------------
class SseReader:
    """Collects (event, data) from the alarm stream in a thread."""

    def __init__(self, base: str) -> None:
        self.events: list[tuple[float, str, dict[str, Any]]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(base,), daemon=True)
        self.thread.start()

    def _run(self, base: str) -> None:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        timeout = httpx.Timeout(5, read=None)
        with httpx.stream("GET", f"{base}/api/v1/alarms/stream", headers=headers, timeout=timeout) as r:
            event = "message"
            for line in r.iter_lines():
                if self.stop.is_set():
                    return
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    self.events.append((time.monotonic(), event, json.loads(line.split(":", 1)[1])))
                    event = "message"

    def named(self, event: str) -> list[dict[str, Any]]:
        return [d for _, e, d in self.events if e == event]


# --- outages of one database on a shared server ---------------------------------------------------
#: What an outage looks like to the service (tests/integration/test_db_unavailable.py):
#: - not_accepting: `ALLOW_CONNECTIONS false` and its backends terminated (maintenance, failover);
#: - terminated: its backends terminated again and again (a server restarting, a proxy cutting);
#: - read_only: `default_transaction_read_only` and new sessions (a standby after failover);
#: - statement_timeout: every statement cancelled after 100 ms, its tables locked meanwhile.
OutageKind = Literal["not_accepting", "terminated", "read_only", "statement_timeout"]
OUTAGE_KINDS: tuple[OutageKind, ...] = ("not_accepting", "terminated", "read_only", "statement_timeout")
#: Tables the statement-timeout outage locks: every write of the service waits on one of them.
_LOCKED = "readings, devices, dead_letters, alarms, alarm_events, device_state, notifications, commands"


class DbOutage:
    """One outage of the database `db` on the server at `admin_url` (never the server's own
    configuration: only `ALTER DATABASE db`, undone by `end`)."""

    def __init__(self, kind: OutageKind, admin_url: str, db_url: str) -> None:
        self.kind = kind
        self.admin_url = admin_url
        self.db_url = db_url
        self.db = db_url.rsplit("/", 1)[1].split("?", 1)[0]
        self._locker: asyncpg.Connection | None = None
        self._terminator: asyncio.Task[None] | None = None
        self.active = False

    async def _admin(self, *sql: str) -> None:
        conn = await asyncpg.connect(self.admin_url)
        try:
            for statement in sql:
                await conn.execute(statement)
        finally:
            await conn.close()

    def _terminate_sql(self) -> str:
        return ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{self.db}' AND pid <> pg_backend_pid()")

    async def start(self) -> None:
        db, terminate = f'"{self.db}"', self._terminate_sql()
        self.active = True
        if self.kind == "not_accepting":
            await self._admin(f"ALTER DATABASE {db} ALLOW_CONNECTIONS false", terminate)
        elif self.kind == "terminated":
            self._terminator = asyncio.create_task(self._terminate_forever())
        elif self.kind == "read_only":
            await self._admin(f"ALTER DATABASE {db} SET default_transaction_read_only = on", terminate)
        else:
            await self._admin(f"ALTER DATABASE {db} SET statement_timeout = '100ms'", terminate)
            self._locker = await asyncpg.connect(self.db_url, server_settings={"statement_timeout": "0"})
            await self._locker.execute("BEGIN")
            await self._locker.execute(f"LOCK TABLE {_LOCKED} IN ACCESS EXCLUSIVE MODE")

    async def _terminate_forever(self) -> None:
        conn = await asyncpg.connect(self.admin_url)
        try:
            while True:
                await conn.execute(self._terminate_sql())
                await asyncio.sleep(0.005)
        finally:
            await conn.close()

    async def end(self) -> None:
        if not self.active:
            return
        self.active = False
        db, terminate = f'"{self.db}"', self._terminate_sql()
        if self._terminator is not None:
            self._terminator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._terminator
            self._terminator = None
        if self._locker is not None:
            await self._locker.close()
            self._locker = None
        if self.kind == "not_accepting":
            await self._admin(f"ALTER DATABASE {db} ALLOW_CONNECTIONS true")
        elif self.kind == "read_only":  # sessions keep their defaults: a failback gives new ones
            await self._admin(f"ALTER DATABASE {db} RESET default_transaction_read_only", terminate)
        elif self.kind == "statement_timeout":
            await self._admin(f"ALTER DATABASE {db} RESET statement_timeout", terminate)


@contextlib.asynccontextmanager
async def db_outage(kind: OutageKind, admin_url: str, db_url: str) -> AsyncIterator[DbOutage]:
    """An outage that is always ended, even when the test fails mid-way."""
    outage = DbOutage(kind, admin_url, db_url)
    try:
        yield outage
    finally:
        await outage.end()

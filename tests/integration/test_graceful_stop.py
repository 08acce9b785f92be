"""SIGTERM and SIGINT stop `miaoxiang serve` and `miaoxiang demo` in order, as real processes.

`serve` on the machine's PostgreSQL and Mosquitto, stopped while QoS 1 reports flow: exit 0, one
"stopped cleanly" line, no child left; restarted on the same persistent session, every reading is
stored exactly once and none that was stored comes back (what it committed it had acknowledged).
`demo` on its embedded PostgreSQL and broker: exit 0, no traceback, no simulator failures, no
PostgreSQL left running on its data directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.integration.faultkit import VENV_BIN, Publisher, Service, in_thread, service, service_env, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

DEVICES = 50
PER_DEVICE = 40  # 2,000 readings
STOP_BOUND_S = 20  # a clean stop of either command takes a few seconds at most


def reports(prefix: str, start_ms: int) -> list[tuple[str, bytes]]:
    """DEVICES x PER_DEVICE QoS 1 reports interleaved across devices; every tenth device's tenth
    report is an alarm on `evt`, the rest telemetry on `tel`."""
    out: list[tuple[str, bytes]] = []
    for seq in range(PER_DEVICE):
        for d in range(DEVICES):
            device, ts = f"gs-{d:03d}", start_ms + seq * 1000 + d
            event, lane = ("alarm", "evt") if d % 10 == 0 and seq % 10 == 5 else ("heartbeat", "tel")
            body = {"ts": ts, "seq": seq, "event": event, "data": {"battery_pct": 80, "smoke_obscuration_pct_m": 0.1}}
            out.append((f"{prefix}/default/{lane}/smoke/{device}", json.dumps(body).encode()))
    return out


def descendants(pid: int) -> set[int]:
    """Every living process below `pid`, from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    return {p for p in pids if Path(f"/proc/{p}").exists()}


def processes_naming(path: Path) -> list[str]:
    """Command lines of living processes that mention `path` (an embedded PostgreSQL's data dir)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in text and int(cmdline.parent.name) != os.getpid():
            found.append(text)
    return found


def stop(proc: subprocess.Popen[bytes], sig: signal.Signals) -> tuple[int, float]:
    """Send `sig`; answer the exit code and how long the process took to exit (killed past the bound)."""
    started = time.monotonic()
    proc.send_signal(sig)
    try:
        code = proc.wait(STOP_BOUND_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        raise AssertionError(f"{sig.name} did not stop the process within {STOP_BOUND_S}s") from None
    return code, time.monotonic() - started


def metric(svc: Service, name: str, label: str = "") -> float:
    """Sum of the samples of metric `name` whose labels contain `label`."""
    total = 0.0
    for line in httpx.get(f"{svc.base}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + "{") and label in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def storage_duplicates(svc: Service) -> float:
    """Readings the database refused as already stored (redeliveries of what was committed)."""
    return metric(svc, "mx_ingest_duplicates_total", 'transport="storage"')


async def count(conn: asyncpg.Connection) -> tuple[int, int]:
    row = await conn.fetchrow(
        "SELECT count(*) AS total, count(DISTINCT (device_id, seq)) AS distinct_ FROM readings"
        " WHERE device_id LIKE 'gs-%'"
    )
    return int(row["total"]), int(row["distinct_"])


async def poll_count(conn: asyncpg.Connection, at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (await count(conn))[0] < at_least:
        assert time.monotonic() < deadline, f"fewer than {at_least} readings stored after {timeout:.0f}s"
        await asyncio.sleep(0.005)


async def hold_readings(database_url: str) -> asyncpg.Connection:
    """A session holding a lock on `readings` that lets reads through and holds every write,
    until it is closed."""
    held = await asyncpg.connect(database_url)
    await held.execute("BEGIN; LOCK TABLE readings IN EXCLUSIVE MODE")
    return held


async def poll_received(svc: Service, at_least: int, timeout: float = 60) -> None:
    """Wait until the service has taken `at_least` readings from the broker."""
    deadline = time.monotonic() + timeout
    while metric(svc, "mx_ingest_received_total", 'transport="mqtt"') < at_least:
        assert time.monotonic() < deadline, f"the service took fewer than {at_least} readings in {timeout:.0f}s"
        await asyncio.sleep(0.005)


async def test_sigterm_mid_stream_stops_serve_cleanly_and_loses_nothing(
    database_url: str, mqtt_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    """Four runs on one persistent session, each given a quarter of the reports at full speed;
    the first three get SIGTERM once they have taken theirs but before it is written (another
    session holds a lock on `readings` until just after the signal), and must write it before
    exiting; the last takes what is left. A quarter stays below what the machine's Mosquitto
    queues for an offline session."""
    messages = reports(topic_prefix, int(time.time() * 1000) - 3_600_000)
    n, quarter = len(messages), len(messages) // 4
    env = service_env(database_url=database_url, mqtt_url=mqtt_url, topic_prefix=topic_prefix,
                      client_id=f"gs-{uuid.uuid4().hex[:8]}", batch_ms="1000")
    conn = await asyncpg.connect(database_url)
    released = [threading.Semaphore(0) for _ in range(4)]
    pub = Publisher(int(mqtt_url.rsplit(":", 1)[1]), window=quarter)

    def publish_quarters() -> None:
        for i in range(4):
            if released[i].acquire(timeout=90):
                pub.send(messages[i * quarter : (i + 1) * quarter])

    thread, errors = in_thread(publish_quarters)
    stops: list[tuple[int, int, float]] = []  # (stored when signalled, stored after the exit, seconds)
    refused = 0.0  # readings the database refused as stored already: redelivered after a commit
    try:
        for run in range(4):
            with service(env, tmp_path / f"run{run}.log") as svc:
                svc.start()
                held = None if run == 3 else await hold_readings(database_url)
                released[run].release()
                if run == 3:
                    thread.join(90)
                    assert not errors, errors
                    await poll_count(conn, n, 30)
                    await asyncio.sleep(1.0)  # late redeliveries, if any, would show now
                    refused += storage_duplicates(svc)
                    break
                await poll_received(svc, quarter)
                refused += storage_duplicates(svc)
                assert svc.proc is not None
                children = descendants(svc.proc.pid)
                signalled = (await count(conn))[0]
                assert held is not None
                stopping = asyncio.create_task(asyncio.to_thread(stop, svc.proc, signal.SIGTERM))
                await asyncio.sleep(0.5)
                await held.close()  # its writes go through now, after the signal
                code, took = await stopping
                stops.append((signalled, (await count(conn))[0], took))
                log, left, svc.proc = svc.log(), alive(children), None
            assert code == 0, log[-3000:]
            assert log.count("stopped cleanly (SIGTERM)") == 1, log[-3000:]
            assert "Traceback" not in log, log[-3000:]
            assert not left, f"processes left after the stop: {left}"
        total, distinct = await count(conn)
    finally:
        for r in released:
            r.release()
        pub.close()
        await conn.close()
    print(f"\nGRACEFUL STOP: (stored when signalled, stored at exit, seconds) {stops}; {total} stored "
          f"({distinct} distinct), {refused:.0f} redelivered after storage, {pub.attempts - n} republished")
    assert total == distinct == n
    assert any(signalled < (run + 1) * quarter for run, (signalled, _, _) in enumerate(stops))  # mid-stream
    # what a run had taken it wrote before exiting
    assert [at_exit for _, at_exit, _ in stops] == [quarter, 2 * quarter, 3 * quarter]
    # What a run committed it had acknowledged: the broker redelivered none of it (a reading the
    # publisher itself sent twice may still meet its stored copy).
    assert refused <= pub.attempts - n


def _demo_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIAOXIANG_")}
    env.update(MIAOXIANG_DATA_DIR=str(data_dir), MIAOXIANG_HTTP_PORT="0", MIAOXIANG_GB26875_PORT="0",
               MIAOXIANG_LOG_LEVEL="INFO")
    return env


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_demo_and_its_embedded_postgres(sig: signal.Signals, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    err_path = tmp_path / "demo.err"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [str(VENV_BIN / "miaoxiang"), "demo", "--devices", "300"], cwd=tmp_path, env=_demo_env(data_dir),
            stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
        )
    try:
        def stderr() -> str:
            return err_path.read_text(errors="replace")

        def playing() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"demo exited with {proc.returncode}:\n{stderr()[-3000:]}")
            return "console:" in stderr() and "sim: round 1" in stderr()

        wait_until(playing, 120, "the demo's console line and first round")
        wait_until(lambda: processes_naming(data_dir), 10, "the embedded PostgreSQL")
        time.sleep(3)  # the simulated fleet publishes meanwhile
        code, took = stop(proc, sig)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    text = stderr()
    assert code == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert "simulator:" not in text, text[-3000:]  # the fleet stopped before the service it talks to
    assert text.count(f"stopped cleanly ({sig.name})") == 1, text[-3000:]
    assert not processes_naming(data_dir), processes_naming(data_dir)
    print(f"\nDEMO {sig.name}: stopped in {took:.1f}s")

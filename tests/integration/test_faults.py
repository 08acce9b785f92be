"""Faults with real processes: kill -9 of `miaoxiang serve`, a Mosquitto restart and a PostgreSQL
outage, each mid-stream. Every reading published at QoS 1 must end up in `readings` exactly once
and no alarm may be duplicated. Private broker and database cluster on spare loopback ports; the
figures are printed (run with -s to see them)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.integration.faultkit import (
    Publisher,
    SseReader,
    in_thread,
    mosquitto,
    pg_cluster,
    report,
    service,
    service_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(170)]

DEVICES = 50
PER_DEVICE = 40  # 2,000 readings
ALARM_DEVICES = 10  # each sends two smoke alarms (seq 10 and 30): one alarm, folded


def stream_of_readings(prefix: str, start_ms: int) -> list[tuple[str, bytes]]:
    """N = DEVICES x PER_DEVICE QoS 1 messages, interleaved across devices; alarms on `evt`."""
    out: list[tuple[str, bytes]] = []
    for seq in range(PER_DEVICE):
        for d in range(DEVICES):
            dev = f"fault-{d:03d}"
            ts = start_ms + seq * 1000 + d
            if d < ALARM_DEVICES and seq in (10, 30):
                payload = report(dev, seq, ts, "alarm", smoke_obscuration_pct_m=4.2, temperature_c=30)
                out.append((f"{prefix}/default/evt/smoke/{dev}", payload))
            else:
                out.append((f"{prefix}/default/tel/smoke/{dev}", report(dev, seq, ts)))
    return out


async def counts(conn: asyncpg.Connection) -> tuple[int, int]:
    row = await conn.fetchrow("SELECT count(*) AS total, count(DISTINCT (device_id, seq)) AS distinct_ FROM readings")
    return int(row["total"]), int(row["distinct_"])


async def settle(conn: asyncpg.Connection, n: int, timeout: float) -> None:
    """Wait (bounded) until n readings are stored, then a little longer for late redeliveries;
    the caller's assertions then report what is missing."""
    deadline = time.monotonic() + timeout
    while (await counts(conn))[0] < n and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)


async def poll(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


async def alarm_figures(conn: asyncpg.Connection) -> dict[str, int]:
    """Smoke alarms stored: how many, for how many devices, and their folded repeat counts."""
    rows = await conn.fetch("SELECT alarm_key, count FROM alarms WHERE type = 'smoke'")
    keys = {r["alarm_key"] for r in rows}
    return {"alarms": len(rows), "alarm_devices": len(keys), "duplicated_alarms": len(rows) - len(keys),
            "alarm_count_sum": sum(int(r["count"]) for r in rows)}


def check_alarms(figures: dict[str, int]) -> None:
    """One smoke alarm per alarming device (two alarm reports each fold into it), none duplicated."""
    assert figures["duplicated_alarms"] == 0
    assert figures["alarm_devices"] == figures["alarms"] == ALARM_DEVICES


async def test_kill_9_mid_stream_loses_nothing_and_duplicates_nothing(
    database_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    messages = stream_of_readings(topic_prefix, int(time.time() * 1000) - 3_600_000)
    n = len(messages)
    env = service_env(
        database_url=database_url, mqtt_url="", topic_prefix=topic_prefix, client_id=f"fault-{uuid.uuid4().hex[:8]}"
    )
    conn = await asyncpg.connect(database_url)
    started = time.monotonic()
    with mosquitto() as broker, service({**env, "MIAOXIANG_MQTT_URL": broker.url}, tmp_path / "svc.log") as svc:
        svc.start()
        pub = Publisher(broker.port)
        try:
            thread, errors = in_thread(lambda: pub.send(messages))
            stored_at_kill = await poll(lambda: _at_least(conn, 200), 60, "200 readings stored before the kill")
            killed_at = pub.published
            svc.kill9()
            thread.join(60)
            assert not errors, errors
            before_restart = (await counts(conn))[0]
            svc.start()
            await settle(conn, n, 30)
            total, distinct = await counts(conn)
            alarms = await alarm_figures(conn)
        finally:
            pub.close()
            await conn.close()
    figures = {
        "published": n, "publisher_attempts": pub.attempts, "published_when_killed": killed_at,
        "stored_when_killed": stored_at_kill, "stored_before_restart": before_restart,
        "stored": total, "distinct": distinct, "duplicated": total - distinct, "lost": n - distinct, **alarms,
        "seconds": round(time.monotonic() - started, 1),
    }
    print("\nFAULT kill -9:", json.dumps(figures))
    assert total == distinct == n
    check_alarms(alarms)


async def _at_least(conn: asyncpg.Connection, n: int) -> int:
    total = (await counts(conn))[0]
    return total if total >= n else 0


async def test_broker_restart_mid_stream_reconnects_and_loses_nothing(
    database_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    messages = stream_of_readings(topic_prefix, int(time.time() * 1000) - 3_600_000)
    n = len(messages)
    env = service_env(
        database_url=database_url, mqtt_url="", topic_prefix=topic_prefix, client_id=f"fault-{uuid.uuid4().hex[:8]}"
    )
    conn = await asyncpg.connect(database_url)
    started = time.monotonic()
    with mosquitto() as broker, service({**env, "MIAOXIANG_MQTT_URL": broker.url}, tmp_path / "svc.log") as svc:
        svc.start()
        pub = Publisher(broker.port)
        try:
            thread, errors = in_thread(lambda: pub.send(messages, pace_s=0.08))
            stored_at_restart = await poll(lambda: _at_least(conn, 300), 60, "300 readings stored before the restart")
            broker.stop()
            await asyncio.sleep(1.5)  # the service sees the broker gone and backs off
            ready_while_down = httpx.get(f"{svc.base}/readyz", timeout=5).json()
            broker.start()
            thread.join(90)
            assert not errors, errors
            await settle(conn, n, 30)
            total, distinct = await counts(conn)
            alarms = await alarm_figures(conn)
            ready_after = httpx.get(f"{svc.base}/readyz", timeout=5).json()
            log = svc.log()
            broker_log = broker.log()
        finally:
            pub.close()
            await conn.close()
    figures = {
        "published": n, "publisher_attempts": pub.attempts, "stored_when_broker_stopped": stored_at_restart,
        "stored": total, "distinct": distinct, "duplicated": total - distinct, "lost": n - distinct, **alarms,
        "seconds": round(time.monotonic() - started, 1),
    }
    print("\nFAULT broker restart:", json.dumps(figures))
    assert "Error" not in broker_log, broker_log[-2000:]  # e.g. a persistence file it cannot write
    assert ready_while_down["broker"] is False  # readiness tells the truth while the broker is gone
    assert ready_after["broker"] is True
    assert "reconnecting in" in log and log.count("lane subscribed") >= 4  # both lanes, twice
    assert total == distinct == n
    check_alarms(alarms)


async def test_postgres_outage_buffers_streams_alarms_and_writes_everything_after(
    topic_prefix: str, tmp_path: Path
) -> None:
    """An 8 s outage of a private cluster (enough to fill a 500-reading buffer: the same thing a
    30 s outage shows, in less CI time). The shared cluster on 5432 is never touched."""
    outage_s = 8.0
    before, during, after = 300, 1200, 300
    start_ms = int(time.time() * 1000) - 3_600_000
    tel = [
        (f"{topic_prefix}/default/tel/water/pw-{i % 20:02d}",
         report(f"pw-{i % 20:02d}", i, start_ms + i, "report", pressure_mpa=0.4))
        for i in range(before + during + after)
    ]
    alarm_devices = [f"smk-{i}" for i in range(3)]
    alarms = [
        (f"{topic_prefix}/default/evt/smoke/{d}",
         report(d, 1, start_ms + 10_000 + i, "alarm", smoke_obscuration_pct_m=5.0))
        for i, d in enumerate(alarm_devices)
    ]
    n = len(tel) + len(alarms)
    started = time.monotonic()
    with pg_cluster() as pg, mosquitto() as broker:
        env = service_env(database_url=pg.url, mqtt_url=broker.url, topic_prefix=topic_prefix,
                          client_id=f"fault-{uuid.uuid4().hex[:8]}", queue_max="500")
        with service(env, tmp_path / "svc.log") as svc:
            svc.start()
            sse = SseReader(svc.base)
            pub = Publisher(broker.port)
            conn = await asyncpg.connect(pg.url)
            try:
                pub.send(tel[:before])
                await poll(lambda: _at_least(conn, before), 30, "readings before the outage")
                await conn.close()
                pg.stop("fast")
                down_at = time.monotonic()
                pub.send(alarms[:1])
                pub.send(tel[before : before + during])
                for a in alarms[1:]:
                    pub.send([a])
                    await asyncio.sleep(0.5)
                await asyncio.sleep(max(0.0, outage_s - (time.monotonic() - down_at)))
                pending_during = sse.named("alarm_pending")
                buffered_during = svc.metric("mx_ingest_write_buffer")
                buffer_full = svc.metric("mx_ingest_buffer_full_total")
                ready_during = httpx.get(f"{svc.base}/readyz", timeout=5).json()
                service_alive = svc.proc is not None and svc.proc.poll() is None
                pg.start()
                up_at = time.monotonic()
                pub.send(tel[before + during :])
                conn = await asyncpg.connect(pg.url)
                await settle(conn, n, 45)
                drained_s = time.monotonic() - up_at
                total, distinct = await counts(conn)
                raised = await conn.fetch("SELECT alarm_key FROM alarms WHERE type = 'smoke'")
                alarm_events = sse.named("alarm")
                log = svc.log()
            finally:
                sse.stop.set()
                pub.close()
                await conn.close()
    figures = {
        "published": n, "stored": total, "distinct": distinct, "duplicated": total - distinct, "lost": n - distinct,
        "outage_s": outage_s, "buffered_during_outage": buffered_during, "buffer_full_events": buffer_full,
        "alarms_published_during_outage": len(alarms), "alarm_pending_streamed_during_outage": len(pending_during),
        "alarms_stored": len(raised), "alarm_events_streamed_after": len(alarm_events),
        "drained_after_recovery_s": round(drained_s, 1), "seconds": round(time.monotonic() - started, 1),
    }
    print("\nFAULT postgres outage:", json.dumps(figures))
    assert service_alive, "the service must survive a database outage"
    assert ready_during["database"] is False
    assert buffer_full >= 1 and "write buffer full" in log  # the bound was reached, and said so
    assert 0 < buffered_during <= 500 + 10_000
    assert "PostgreSQL write failed" in log and "PostgreSQL writes recovered" in log
    assert pending_during and pending_during[0]["device_ids"] == alarm_devices[:1]  # streamed, not stored yet
    assert sorted(r["alarm_key"] for r in raised) == sorted(f"device:{d}" for d in alarm_devices)
    assert len(alarm_events) >= len(alarm_devices)
    assert total == distinct == n
    streamed = {p["device_ids"][0] for p in pending_during}
    assert streamed == set(alarm_devices)  # every alarm reached the stream while the database was down

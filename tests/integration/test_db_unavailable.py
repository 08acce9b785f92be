"""The database unavailable in each way `devices.db_errors` names, with `miaoxiang serve` running
against its own test database on the shared server (only that database is altered): not
accepting connections, backends terminated, read-only, statements cancelled by a timeout.

In each: readings before, during and after; alarms published during the outage must show as
`alarm_pending` on the stream at once; `/readyz` says not ready; then the outage ends and the
service, still running, writes every reading once, commits every alarm and checkpoints the
devices' live state."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from tests.integration.faultkit import (
    OUTAGE_KINDS,
    OutageKind,
    Publisher,
    SseReader,
    db_outage,
    report,
    service,
    service_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

OUTAGE_S = 4.0
BEFORE, DURING, AFTER = 100, 200, 50
WATER = 20  # telemetry devices
ALARM_DEVICES = [f"smk-{i}" for i in range(3)]
#: What `GET /api/v1/alarms` may answer during each kind of outage.
API_DURING: dict[OutageKind, set[int]] = {
    "not_accepting": {503}, "terminated": {200, 503}, "read_only": {200}, "statement_timeout": {503},
}


async def wait_for(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    """Poll `predicate` (bounded) until it answers something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        with_value = await predicate()
        if with_value:
            return with_value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.1)


async def fetchval(url: str, sql: str) -> object:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


@pytest.mark.parametrize("kind", OUTAGE_KINDS)
async def test_service_survives_database_unavailable_and_writes_everything_after(
    kind: OutageKind, pg_admin_url: str, database_url: str, mqtt_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    start_ms = int(time.time() * 1000) - 600_000
    tel = [
        (f"{topic_prefix}/default/tel/water/pw-{i % WATER:02d}",
         report(f"pw-{i % WATER:02d}", i, start_ms + i, "report", pressure_mpa=0.4))
        for i in range(BEFORE + DURING + AFTER)
    ]
    alarms = [
        (f"{topic_prefix}/default/evt/smoke/{d}",
         report(d, 1, start_ms + 10_000 + i, "alarm", smoke_obscuration_pct_m=5.0))
        for i, d in enumerate(ALARM_DEVICES)
    ]
    n = len(tel) + len(alarms)
    env = service_env(database_url=database_url, mqtt_url=mqtt_url, topic_prefix=topic_prefix,
                      client_id=f"dbout-{uuid.uuid4().hex[:8]}", checkpoint_interval_s="1")
    stored = "SELECT count(DISTINCT (device_id, seq)) * 1000000 + count(*) FROM readings"  # distinct, total
    with service(env, tmp_path / "svc.log") as svc:
        svc.start()
        sse = SseReader(svc.base)
        pub = Publisher(urlsplit(mqtt_url).port or 1883)
        try:
            pub.send(tel[:BEFORE])
            await wait_for(lambda: _at_least(database_url, BEFORE), 30, "readings before the outage")
            async with db_outage(kind, pg_admin_url, database_url) as outage:
                await outage.start()
                down_at = time.monotonic()
                for a in alarms:
                    pub.send([a])
                    await asyncio.sleep(0.3)
                pub.send(tel[BEFORE:BEFORE + DURING])
                await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
                pending = {p["device_ids"][0] for p in sse.named("alarm_pending")}
                committed = {a["device_ids"][0] for a in sse.named("alarm")}  # between two terminations
                ready_during = httpx.get(f"{svc.base}/readyz", timeout=5)
                api_during = svc.get("/api/v1/alarms")  # read from the database
                alive_during = svc.proc is not None and svc.proc.poll() is None
                await outage.end()
            up_ms = int(time.time() * 1000)
            pub.send(tel[BEFORE + DURING:])
            await wait_for(lambda: _at_least(database_url, n), 45, "every reading written after the outage")
            raised = await wait_for(lambda: _alarms(database_url), 30, "the alarms committed")
            await wait_for(lambda: _streamed(sse, len(ALARM_DEVICES)), 30, "the alarms' events on the stream")
            await wait_for(lambda: _checkpointed(database_url, up_ms), 30, "the devices' live state checkpointed")
            ready_after = await wait_for(lambda: _ready(svc.base), 30, "/readyz ready again")
            await asyncio.sleep(1.0)  # late redeliveries would show now
            value = int(await fetchval(database_url, stored))  # type: ignore[call-overload]
            alive_after = svc.proc is not None and svc.proc.poll() is None
            log = svc.log()
        finally:
            sse.stop.set()
            pub.close()
    distinct, total = divmod(value, 1_000_000)
    figures = {"kind": kind, "published": n, "stored": total, "distinct": distinct, "pending_streamed": sorted(pending),
               "committed_during": sorted(committed), "ready_during": ready_during.json(), "alarms": sorted(raised)}
    print(f"\nDB UNAVAILABLE {kind}:", json.dumps(figures))
    assert alive_during and alive_after, f"the service stopped:\n{log[-3000:]}"
    assert "background task failed" not in log, log[-3000:]
    assert pending | committed == set(ALARM_DEVICES), "every alarm decided during the outage reaches the stream"
    if kind == "terminated":  # a write may get through between two terminations
        assert pending, "the outage was felt"
    else:
        assert pending == set(ALARM_DEVICES), "shown at once as pending, since none could be written"
    assert ready_during.status_code == 503 and ready_during.json()["database"] is False
    assert ready_after["database"] is True
    # reads: refused with 503 and Retry-After, never a 500; a read-only database still serves them,
    # and one may get through between two terminations
    assert api_during.status_code in API_DURING[kind], api_during.text
    if api_during.status_code == 503:
        assert api_during.headers["retry-after"] and "数据库暂不可用" in api_during.json()["detail"]
    assert sorted(raised) == sorted(f"device:{d}" for d in ALARM_DEVICES)
    assert total == distinct == n, "every reading written once"


async def _at_least(url: str, n: int) -> bool:
    return int(await fetchval(url, "SELECT count(*) FROM readings")) >= n  # type: ignore[call-overload]


async def _alarms(url: str) -> list[str] | None:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT alarm_key FROM alarms WHERE type = 'smoke'")
    finally:
        await conn.close()
    return [r["alarm_key"] for r in rows] if len(rows) >= len(ALARM_DEVICES) else None


async def _streamed(sse: SseReader, n: int) -> bool:
    return len({a["device_ids"][0] for a in sse.named("alarm")}) >= n


async def _checkpointed(url: str, since_ms: int) -> bool:
    """Every device heard has its last_seen saved, the telemetry devices' from after the outage."""
    saved = await fetchval(url, f"""SELECT count(*) FILTER (WHERE device_id LIKE 'smk-%' AND last_seen IS NOT NULL)
        + 1000 * count(*) FILTER (WHERE device_id LIKE 'pw-%' AND last_seen >= to_timestamp({since_ms} / 1000.0))
        FROM device_state""")
    return int(saved) == 1000 * WATER + len(ALARM_DEVICES)  # type: ignore[call-overload]


async def _ready(base: str) -> dict[str, object] | None:
    r = httpx.get(f"{base}/readyz", timeout=5)
    return r.json() if r.status_code == 200 else None

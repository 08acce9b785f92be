"""AlarmService on real PostgreSQL with the real correlation core and fleet: the pipeline's batch
handler, offline sweeps and their clears, evidence enrichment, the background loops."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from alerting.core import Correlator
from alerting.service import AlarmService
from devices.batch import ReadingColumns
from devices.fleet import Fleet
from devices.kinds import Event, Kind
from devices.reading import Reading
from miaoxiang.migrate import migrate
from miaoxiang.settings import DEFAULT_MIGRATIONS_DIR
from tests.clock import Clock
from tests.service import wait_for

pytestmark = pytest.mark.integration
T0 = 1_795_341_600_000
REGION = "江西省/赣州市/章贡区/南外街道"


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(database_url, min_size=1, max_size=6)
    async with p.acquire() as conn:
        await migrate(conn, DEFAULT_MIGRATIONS_DIR)
    yield p
    await p.close()


def make_service(pool: asyncpg.Pool, clock: Clock, **kwargs: float) -> tuple[AlarmService, CollectorRegistry]:
    fleet = Fleet()
    fleet.set_unit("U1", region=REGION)
    fleet.upsert("S1", Kind.smoke, unit_id="U1", cell_id="1A2B3C")
    fleet.upsert("S2", Kind.smoke, unit_id="U1", cell_id="1A2B3C")
    fleet.upsert("G1", Kind.gas, unit_id="U1")
    fleet.upsert("E1", Kind.electrical, unit_id="U1")
    registry = CollectorRegistry()
    service = AlarmService.create(
        pool=pool, fleet=fleet, correlator=Correlator(), clock=clock, registry=registry, **kwargs
    )
    return service, registry


async def feed(service: AlarmService, *readings: Reading) -> None:
    """What the pipeline does with one batch, until its decisions are committed by the writer."""
    rs = list(readings)
    columns = ReadingColumns.from_readings(rs, service.fleet.slots([r.device_id for r in rs]))
    committed = await service.on_batch(rs, columns)
    if committed is not None:
        writer = asyncio.create_task(service.writer.run())
        try:
            await committed
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer


def reading(device: str, kind: Kind, event: Event, ts: int, **metrics: object) -> Reading:
    return Reading(device, kind, event, ts, ts + 150, seq=7, metrics=dict(metrics))


async def alarms(pool: asyncpg.Pool) -> dict[tuple[str, str], asyncpg.Record]:
    return {(r["alarm_key"], r["type"]): r for r in await pool.fetch("SELECT * FROM alarms ORDER BY alarm_id")}


async def test_batch_alarms_reach_the_database_and_the_stream(pool: asyncpg.Pool) -> None:
    clock = Clock(T0 + 200)
    service, registry = make_service(pool, clock)
    async with service.hub.subscribe(lambda region: True) as sub:
        await feed(service,
                   reading("S1", Kind.smoke, Event.alarm, T0, smoke_obscuration_pct_m=4.2, temperature_c=31.5,
                           cell_id="1A2B3C"),
                   reading("G1", Kind.gas, Event.fault, T0, fault_code="chamber_dirty"))
        got = [sub.queue.get_nowait() for _ in range(sub.queue.qsize())]
    rows = await alarms(pool)
    smoke = rows[("device:S1", "smoke")]
    assert (smoke["severity"], smoke["response"], smoke["unit_id"], smoke["region"]) == (
        "major", "verify", "U1", REGION
    )
    [ev] = json.loads(smoke["evidence"])
    assert (ev["device_id"], ev["ts_ms"], ev["cell_id"], ev["seq"]) == ("S1", T0, "1A2B3C", 7)
    assert "row" not in ev
    fault = rows[("device:G1", "device_fault")]
    assert json.loads(fault["evidence"])[0]["fault_code"] == "chamber_dirty"
    assert sorted(e.data["type"] for e in got if e is not None) == ["device_fault", "smoke"]
    latency = registry.get_sample_value("mx_alarm_stream_latency_seconds_count")
    assert latency == 2  # received at T0 + 150, published at T0 + 200
    assert registry.get_sample_value("mx_alarm_stream_latency_seconds_sum") == pytest.approx(0.1)


async def test_two_detectors_of_a_unit_raise_an_immediate_unit_fire(pool: asyncpg.Pool) -> None:
    service, _ = make_service(pool, Clock(T0 + 70_000))
    await feed(service, reading("S1", Kind.smoke, Event.alarm, T0))
    await feed(service, reading("S2", Kind.smoke, Event.alarm, T0 + 60_000))
    rows = await alarms(pool)
    fire = rows[("unit:U1", "fire")]
    assert (fire["severity"], fire["response"], fire["region"]) == ("critical", "immediate", REGION)
    assert sorted(fire["device_ids"]) == ["S1", "S2"]


async def test_offline_sweep_raises_and_hearing_the_device_clears(pool: asyncpg.Pool) -> None:
    clock = Clock(T0)
    service, _ = make_service(pool, clock)
    await feed(service, reading("E1", Kind.electrical, Event.heartbeat, T0))  # received T0 + 150; 300 s heartbeat
    await service.sweep(T0 + 150 + 750_000)  # silent for exactly 2.5 heartbeats: not yet
    assert ("device:E1", "offline") not in await alarms(pool)
    clock.now = T0 + 150 + 750_001
    await service.sweep(clock.now)
    offline = (await alarms(pool))[("device:E1", "offline")]
    assert offline["status"] == "active_unack"
    clock.now = T0 + 800_000
    await feed(service, reading("E1", Kind.electrical, Event.heartbeat, T0 + 799_000))
    offline = (await alarms(pool))[("device:E1", "offline")]
    assert (offline["status"], offline["cleared_at"] is not None) == ("cleared_unack", True)


async def test_run_drives_sweeps_and_timers_until_cancelled(pool: asyncpg.Pool) -> None:
    clock = Clock(T0)
    service, _ = make_service(pool, clock, sweep_interval_s=0.05)
    service.tick_interval_s = 0.05
    await feed(service, reading("E1", Kind.electrical, Event.heartbeat, T0), reading("S1", Kind.smoke, Event.alarm, T0))
    clock.now = T0 + 800_000  # E1 overdue; the smoke alarm has waited more than 60 s unacknowledged
    task = asyncio.create_task(service.run())
    try:
        async def done() -> bool:
            rows = await alarms(pool)
            return ("device:E1", "offline") in rows and rows[("device:S1", "smoke")]["response"] == "immediate"

        await wait_for(done, 5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert task.cancelled()


async def test_an_electrical_fire_monitor_alarm_code_decides_the_alarm_type(pool: asyncpg.Pool) -> None:
    """A CTWing electrical-fire monitor's alarm_type 1 (leakage) below every limit: residual_current, with
    the device's code in the evidence, not a type guessed from the nearest metric."""
    from ingest.codecs.ctwing import decode_ctwing
    from ingest.codecs.profiles import ProfileRegistry

    body = {"timestamp": T0, "messageType": "dataReport", "IMEI": "E1", "deviceId": "15017088E1",
            "productId": "15017088",
            "payload": {"serviceData": {"alarm_type": 1, "residual_current": 120, "temp_a": 61, "voltage_a": 221}}}
    result = decode_ctwing(json.dumps(body).encode(), received_ms=T0 + 100, profiles=ProfileRegistry.load(),
                           profile="ctwing-electrical-fire")
    [r] = result.readings
    clock = Clock(T0 + 200)
    service, _ = make_service(pool, clock)
    await feed(service, r)
    [a] = (await alarms(pool)).values()
    assert (a["type"], a["rule"], a["device_ids"]) == ("residual_current", "electrical.alarm_code", ["E1"])
    assert json.loads(a["evidence"])[0]["alarm_code"] == "residual_current"

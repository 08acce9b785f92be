"""Start-up from the fleet snapshot plus the device_state rows written since it, against PostgreSQL."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from devices import fleet_query
from devices.kinds import Event, Kind
from devices.registry import DeviceSpec
from tests.integration.test_devices_registry import T0, readings, service

pytestmark = pytest.mark.integration


async def registered(pool: asyncpg.Pool, *devices: tuple[str, str]) -> None:
    svc = service(pool)
    for device_id, kind in devices:
        await svc.register(DeviceSpec.parse({"device_id": device_id, "kind": kind}))


async def test_load_reads_the_snapshot_then_the_rows_written_since(pool: asyncpg.Pool) -> None:
    await registered(pool, ("s1", "smoke"), ("g1", "gas"), ("w1", "water"))
    first = service(pool)
    await first.load()
    f = first.fleet
    f.apply(readings(f, ("s1", Kind.smoke, Event.alarm, {"battery_pct": 81}),
                     ("g1", Kind.gas, Event.heartbeat, {"gas_lel_pct": 2.5})))
    await first.checkpoint()
    assert await first.snapshot() == 3 and not first.snapshot_due
    # after the snapshot: g1 changes and is checkpointed (a row newer than the snapshot) ...
    f.apply(readings(f, ("g1", Kind.gas, Event.fault, {"gas_lel_pct": 7.5}), ts=T0 + 60_000))
    await first.checkpoint()
    # ... and an older row that the snapshot supersedes must not be read over it
    await pool.execute("UPDATE device_state SET updated_at = now() - interval '1 hour', status = 'unknown', "
                       "last_values = '{}' WHERE device_id = 's1'")

    second = service(pool)
    assert await second.load() == 3
    for device in ("s1", "g1", "w1"):
        assert fleet_query.snapshot(second.fleet, second.fleet.slot(device)) == fleet_query.snapshot(
            f, f.slot(device)), device
    g1 = fleet_query.snapshot(second.fleet, second.fleet.slot("g1"))
    assert g1["status"] == "fault" and g1["values"]["gas_lel_pct"]["value"] == 7.5
    assert not second.snapshot_due  # a short journal: no new snapshot needed yet
    assert second.fleet.stored_values == {"battery_pct", "gas_lel_pct"}


async def test_without_a_usable_snapshot_every_row_is_read_and_a_snapshot_follows(pool: asyncpg.Pool) -> None:
    await registered(pool, ("s1", "smoke"))
    first = service(pool)
    await first.load()
    first.fleet.apply(readings(first.fleet, ("s1", Kind.smoke, Event.alarm, {"battery_pct": 81})))
    await first.checkpoint()
    await first.snapshot()
    await pool.execute("UPDATE fleet_snapshot SET format = format + 1")  # a layout this build does not read

    second = service(pool, tick_s=0.02)
    assert await second.load() == 1 and second.snapshot_due
    assert fleet_query.snapshot(second.fleet, 0)["status"] == "alarm"  # from the rows
    task = asyncio.create_task(second.run())
    try:
        async with asyncio.timeout(10):
            while await pool.fetchval("SELECT count(*) FROM fleet_snapshot WHERE format = 1") == 0:
                await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    third = service(pool)
    assert await third.load() == 1 and not third.snapshot_due
    assert fleet_query.snapshot(third.fleet, 0)["status"] == "alarm"


async def test_checkpoint_writes_in_chunks_and_a_failed_chunk_leaves_the_rest_dirty(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    devices = [f"s{i}" for i in range(5)]
    await registered(pool, *((d, "smoke") for d in devices))
    svc = service(pool)
    await svc.load()
    f = svc.fleet
    f.apply(readings(f, *((d, Kind.smoke, Event.heartbeat, {"battery_pct": 50 + i}) for i, d in enumerate(devices))))
    monkeypatch.setattr("devices.service.CHECKPOINT_CHUNK", 2)
    write, calls = svc._write_state, []

    async def second_fails(rows: list[tuple[object, ...]]) -> None:
        calls.append([r[0] for r in rows])
        if len(calls) == 2:
            raise asyncpg.PostgresConnectionError("gone")
        await write(rows)

    monkeypatch.setattr(svc, "_write_state", second_fails)
    with pytest.raises(asyncpg.PostgresConnectionError):
        await svc.checkpoint()
    assert calls == [["s0", "s1"], ["s2", "s3"]]
    assert sorted(f.device_ids[s] for s in f.take_dirty()) == ["s2", "s3", "s4"]  # the first chunk is written
    f.mark_dirty([f.slot(d) for d in ("s2", "s3", "s4")])
    monkeypatch.setattr(svc, "_write_state", write)
    assert await svc.checkpoint() == 3
    saved = await pool.fetch("SELECT device_id, battery_pct FROM device_state ORDER BY device_id")
    assert [(r["device_id"], r["battery_pct"]) for r in saved] == [(d, 50 + i) for i, d in enumerate(devices)]

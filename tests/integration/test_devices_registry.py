"""Registry, bulk import and fleet load/checkpoint against the real PostgreSQL."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import numpy as np
import pytest

from devices import fleet_query
from devices.batch import ReadingColumns
from devices.commands import CommandService
from devices.fleet import FLAPPING, FLOODING, MAINTENANCE, QUARANTINED, Fleet
from devices.kinds import Event, Kind
from devices.reading import Reading
from devices.registry import DeviceSpec, KindConflict, UnitSpec, UnknownUnit, upsert_unit
from devices.service import DeviceService

pytestmark = pytest.mark.integration
T0 = 1_795_341_600_000
REGION = "江西省/赣州市/章贡区/南外街道"



async def _unused_publish(topic: str, payload: bytes) -> None:
    raise AssertionError(f"nothing is published in registry tests ({topic})")


def service(pool: asyncpg.Pool, fleet: Fleet | None = None, **kw: float) -> DeviceService:
    fleet = fleet or Fleet()
    commands = CommandService(pool, fleet, _unused_publish, topic_root="mxtest/x", clock=lambda: T0)
    return DeviceService(pool, fleet, commands, clock=lambda: T0, **kw)


async def add_unit(pool: asyncpg.Pool, svc: DeviceService, unit_id: str, region: str = REGION) -> None:
    async with pool.acquire() as conn:
        unit, _ = await upsert_unit(
            conn, UnitSpec.parse({"unit_id": unit_id, "name": f"unit {unit_id}", "region": region})
        )
    svc.fleet.set_unit(unit_id, region=unit["region"], maintenance=unit["maintenance"])


def readings(fleet: Fleet, *rows: tuple[str, Kind, Event, dict[str, float]], ts: int = T0) -> ReadingColumns:
    rs = [Reading(d, k, e, ts, ts + 50, None, m) for d, k, e, m in rows]
    return ReadingColumns.from_readings(rs, fleet.slots([r.device_id for r in rs]))


async def test_units_create_every_region_ancestor(pool: asyncpg.Pool) -> None:
    svc = service(pool)
    await add_unit(pool, svc, "U1")
    await add_unit(pool, svc, "U2", "江西省/赣州市/南康区")
    rows = await pool.fetch("SELECT path, name, parent, level FROM regions ORDER BY level, path")
    assert [tuple(r) for r in rows] == [
        ("江西省", "江西省", None, 1),
        ("江西省/赣州市", "赣州市", "江西省", 2),
        ("江西省/赣州市/南康区", "南康区", "江西省/赣州市", 3),
        ("江西省/赣州市/章贡区", "章贡区", "江西省/赣州市", 3),
        ("江西省/赣州市/章贡区/南外街道", "南外街道", "江西省/赣州市/章贡区", 4),
    ]


async def test_register_update_and_refuse_another_kind(pool: asyncpg.Pool) -> None:
    svc = service(pool)
    await add_unit(pool, svc, "U1")
    spec = DeviceSpec.parse({"device_id": "868120301234567", "kind": "smoke", "unit_id": "U1", "heartbeat_s": 3600,
                             "thresholds": {"smoke_temp_c": 60}, "cell_id": "1A2B"})
    assert (await svc.register(spec))["created"] is True
    again = DeviceSpec.parse({"device_id": "868120301234567", "kind": "smoke", "unit_id": "U1"})
    assert (await svc.register(again))["created"] is False
    row = await pool.fetchrow("SELECT * FROM devices WHERE device_id = '868120301234567'")
    assert (row["heartbeat_s"], json.loads(row["thresholds"]), row["cell_id"]) == (None, {}, None)
    slot = svc.fleet.slot("868120301234567")
    assert fleet_query.snapshot(svc.fleet, slot)["region"] == REGION
    assert svc.fleet.heartbeat_ms[slot] == 86_400_000  # back to the smoke default
    assert np.isnan(svc.fleet.thresholds["smoke_temp_c"][slot])

    with pytest.raises(KindConflict, match=r"^device 868120301234567 is registered as smoke, not gas$"):
        await svc.register(DeviceSpec.parse({"device_id": "868120301234567", "kind": "gas"}))
    with pytest.raises(UnknownUnit, match=r"^unit U9 is not registered$"):
        await svc.register(DeviceSpec.parse({"device_id": "d2", "kind": "gas", "unit_id": "U9"}))
    assert await pool.fetchval("SELECT kind FROM devices WHERE device_id = '868120301234567'") == "smoke"
    assert await pool.fetchval("SELECT count(*) FROM devices") == 1


async def test_registering_a_quarantined_device_ends_its_quarantine(pool: asyncpg.Pool) -> None:
    svc = service(pool)
    await add_unit(pool, svc, "U1")
    # what the ingest pipeline does for traffic from an unknown device
    await pool.execute("INSERT INTO devices (device_id, kind, quarantined) VALUES ('dq', 'gas', true)")
    slot = svc.fleet.upsert("dq", Kind.gas, quarantined=True)
    await pool.execute("UPDATE devices SET maintenance = true WHERE device_id = 'dq'")
    outcome = await svc.register(DeviceSpec.parse({"device_id": "dq", "kind": "gas", "unit_id": "U1"}))
    assert outcome == {"device_id": "dq", "created": False, "was_quarantined": True}
    assert await pool.fetchval("SELECT quarantined FROM devices WHERE device_id = 'dq'") is False
    assert int(svc.fleet.flags[slot]) & QUARANTINED == 0
    assert int(svc.fleet.flags[slot]) & MAINTENANCE  # registering keeps maintenance as it was
    assert (await svc.register(DeviceSpec.parse({"device_id": "dq", "kind": "gas"})))["was_quarantined"] is False


async def test_import_counts_and_exact_reasons(pool: asyncpg.Pool) -> None:
    svc = service(pool)
    await add_unit(pool, svc, "U1")
    await svc.register(DeviceSpec.parse({"device_id": "old-smoke", "kind": "smoke", "unit_id": "U1"}))
    await svc.register(DeviceSpec.parse({"device_id": "old-gas", "kind": "gas"}))
    text = (
        "device_id,kind,unit_id,heartbeat_s,thresholds\n"
        'new-1,electrical,U1,300,"{""cable_temp_c"": 65}"\n'
        "old-smoke,smoke,U1,7200,\n"
        "old-gas,smoke,U1,,\n"
        "new-2,water,U9,,\n"
        "new-3,boiler,U1,,\n"
        "new-4,water,,,\n"
    )
    progress: list[tuple[str, int, int]] = []
    report = await svc.import_devices(text, "csv", lambda *p: progress.append(p))
    answer = report.as_dict()
    assert (answer["created"], answer["updated"], answer["rejected"]) == (2, 1, 3)
    assert answer["errors"] == [
        {"line": 4, "device_id": "old-gas", "reason": "device old-gas is registered as gas, not smoke"},
        {"line": 5, "device_id": "new-2", "reason": "unit U9 is not registered"},
        {
            "line": 6,
            "device_id": "new-3",
            "reason": "unknown kind 'boiler'; expected one of smoke, gas, electrical, water, uitd, charger",
        },
    ]
    assert progress == [("parsed", 5, 6), ("written", 3, 6), ("fleet", 3, 3)]
    rows = {r["device_id"]: r for r in await pool.fetch("SELECT * FROM devices")}
    assert sorted(rows) == ["new-1", "new-4", "old-gas", "old-smoke"]
    assert rows["old-smoke"]["heartbeat_s"] == 7200 and rows["old-gas"]["kind"] == "gas"
    fleet = svc.fleet
    assert fleet.thresholds["cable_temp_c"][fleet.slot("new-1")] == 65
    assert fleet.heartbeat_ms[fleet.slot("old-smoke")] == 7_200_000
    assert fleet_query.snapshot(fleet, fleet.slot("new-4"))["kind"] == "water"


async def test_load_restores_registry_and_checkpointed_live_state(pool: asyncpg.Pool) -> None:
    first = service(pool)
    await add_unit(pool, first, "U1")
    await first.import_devices(
        "device_id,kind,unit_id,thresholds\n"
        'smoke-1,smoke,U1,"{""smoke_temp_c"": 55}"\n'
        "gas-1,gas,U1,\n"
        "gas-2,gas,,\n",
        "csv",
    )
    await pool.execute("UPDATE units SET maintenance = true WHERE unit_id = 'U1'")
    first.fleet.apply(readings(first.fleet,
                               ("smoke-1", Kind.smoke, Event.alarm, {"temperature_c": 31.5, "battery_pct": 86}),
                               ("gas-1", Kind.gas, Event.heartbeat, {"gas_lel_pct": 2.5})))
    assert await first.checkpoint() == 2
    assert await first.checkpoint() == 0  # nothing changed since

    second = service(pool)
    assert await second.load() == 3
    for device in ("smoke-1", "gas-1", "gas-2"):
        a = fleet_query.snapshot(first.fleet, first.fleet.slot(device))
        b = fleet_query.snapshot(second.fleet, second.fleet.slot(device))
        assert {k: v for k, v in b.items() if k != "maintenance"} == {k: v for k, v in a.items() if k != "maintenance"}
    smoke = fleet_query.snapshot(second.fleet, second.fleet.slot("smoke-1"))
    assert smoke["status"] == "alarm" and smoke["values"]["temperature_c"]["value"] == 31.5
    assert smoke["maintenance"] is True  # the unit's flag, loaded from units
    assert second.fleet.thresholds["smoke_temp_c"][second.fleet.slot("smoke-1")] == 55


async def test_run_checkpoints_periodically_and_when_cancelled(pool: asyncpg.Pool) -> None:
    svc = service(pool, checkpoint_interval_s=0.05, tick_s=0.02)
    await svc.register(DeviceSpec.parse({"device_id": "w1", "kind": "water"}))
    task = asyncio.create_task(svc.run())
    svc.fleet.apply(readings(svc.fleet, ("w1", Kind.water, Event.report, {"pressure_mpa": 0.31})))
    async with asyncio.timeout(5):
        while await pool.fetchval("SELECT status FROM device_state WHERE device_id = 'w1'") != "online":
            await asyncio.sleep(0.02)
    svc.checkpoint_interval_s = 3600
    await asyncio.sleep(0.1)  # the loop has taken the long interval
    svc.fleet.apply(readings(svc.fleet, ("w1", Kind.water, Event.alarm, {"pressure_mpa": 0.05}), ts=T0 + 60_000))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    row = await pool.fetchrow("SELECT status, last_values FROM device_state WHERE device_id = 'w1'")
    assert row["status"] == "alarm"
    assert json.loads(row["last_values"])["values"]["pressure_mpa"]["value"] == 0.05


def _columns_by_device(fleet: Fleet) -> dict[str, dict[str, object]]:
    """Every per-slot column of every device, by device id (units, cells and parents by name)."""
    out: dict[str, dict[str, object]] = {}
    for s, d in enumerate(fleet.device_ids):
        out[d] = {
            "kind": int(fleet.kind[s]), "unit": fleet.units.names[fleet.unit[s]] if fleet.unit[s] >= 0 else None,
            "cell": fleet.cells.names[fleet.cell[s]] if fleet.cell[s] >= 0 else None,
            "parent": fleet.device_ids[fleet.parent[s]] if fleet.parent[s] >= 0 else None,
            **{name: int(getattr(fleet, name)[s]) for name in (
                "heartbeat_ms", "last_seen_ms", "last_ts_ms", "offline_since_ms", "offline_at_ms", "mute_until_ms",
                "flags")},
            **{f"value.{k}": (float(v[s]), int(fleet.value_ts_ms[k][s])) for k, v in fleet.values.items()
               if not np.isnan(v[s])},
            **{f"threshold.{k}": float(v[s]) for k, v in fleet.thresholds.items() if not np.isnan(v[s])},
        }
    return out


async def test_checkpointed_fleet_loads_column_for_column(pool: asyncpg.Pool) -> None:
    """What is registered and checkpointed is what a restart loads: registry columns, components
    after their transmission device, flag bits (flooding, flapping, quarantine), times, values."""
    empty = service(pool)
    assert await empty.load() == 0  # no devices, no saved state: the loaders answer NULL arrays
    first = service(pool)
    await add_unit(pool, first, "U1")
    await first.import_devices(
        "device_id,kind,unit_id,cell_id,heartbeat_s,thresholds\n"
        'z-smoke,smoke,U1,C7,600,"{""smoke_temp_c"": 55, ""battery_pct_min"": 15}"\n'
        "a-gas,gas,U1,,,\n"
        "m-uitd,uitd,U1,,,\n"
        "q-water,water,,,,\n",
        "csv",
    )
    await pool.execute("UPDATE devices SET quarantined = true WHERE device_id = 'q-water'")
    await pool.execute("INSERT INTO devices (device_id, kind, unit_id, parent_id) "
                       "VALUES ('b-component', 'smoke', 'U1', 'm-uitd')")
    f = first.fleet
    f.upsert("q-water", Kind.water, quarantined=True)
    f.upsert("b-component", Kind.smoke, unit_id="U1", parent_id="m-uitd")
    f.apply(readings(f, ("z-smoke", Kind.smoke, Event.alarm, {"temperature_c": 31.5, "battery_pct": 86.5}),
                     ("a-gas", Kind.gas, Event.fault, {"gas_lel_pct": 2.5, "rsrp_dbm": -97}),
                     ("m-uitd", Kind.uitd, Event.heartbeat, {})))
    f.mark_flapping(np.array([f.slot("z-smoke")]))
    f.set_flooding(f.slot("a-gas"), True)
    f.mute(f.slot("a-gas"), T0 + 3_600_000)
    f.sweep(T0 + 86_400_000 * 10)  # everything heard goes offline, with offline_since
    await first.checkpoint()

    second = service(pool)
    assert await second.load() == 5
    g = second.fleet
    # slots in device_id order, components after their transmission devices
    assert g.device_ids == ["a-gas", "m-uitd", "q-water", "z-smoke", "b-component"]
    expected = _columns_by_device(f)
    assert _columns_by_device(g) == expected
    assert expected["z-smoke"]["flags"] & FLAPPING and expected["a-gas"]["flags"] & FLOODING
    assert expected["a-gas"]["offline_since_ms"] > 0 and expected["a-gas"]["mute_until_ms"] == T0 + 3_600_000
    assert expected["b-component"]["parent"] == "m-uitd" and expected["q-water"]["flags"] & QUARANTINED
    assert expected["z-smoke"]["threshold.smoke_temp_c"] == 55 and expected["z-smoke"]["heartbeat_ms"] == 600_000
    assert expected["a-gas"]["value.rsrp_dbm"] == (-97.0, T0)

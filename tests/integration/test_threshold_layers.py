"""Thresholds in layers through the real service (CONTRACT §10, issue 18): a unit's
`pressure_low_mpa` raises `water_pressure_low` at a pressure the default would not, a profile's
wins over the unit's, a device's own over both, and changing the unit's re-applies at once."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import aiomqtt
import asyncpg
import pytest

from devices.commands import CommandService
from devices.fleet import Fleet
from devices.kinds import Kind
from devices.registry import UnitSpec, upsert_unit
from devices.registry_follow import refresh
from devices.service import DeviceService
from miaoxiang.settings import Settings
from tests.service import RunningService, running_service, wait_for

pytestmark = pytest.mark.integration
UNIT = "U-pump-room"
PROFILE = "mx-test-hydrant"


def _broker(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("mqtt://").split(":")
    return host, int(port)


async def _report(settings: Settings, device_id: str, pressure: float, ts: int) -> None:
    host, port = _broker(settings.mqtt_url or "")
    async with aiomqtt.Client(host, port) as pub:
        body = {"ts": ts, "event": "report", "data": {"pressure_mpa": pressure}}
        await pub.publish(settings.topic("evt", "water", device_id), json.dumps(body), qos=1)


async def _low_alarms(svc: RunningService, device_id: str) -> list[dict[str, Any]]:
    r = await svc.http.get("/api/v1/alarms", params={"device_id": device_id, "type": "water_pressure_low"},
                           headers=svc.auth())
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def _raised_by(svc: RunningService, device_id: str) -> dict[str, Any]:
    """The device's one water_pressure_low alarm, once raised."""
    alarms = await wait_for(lambda: _low_alarms(svc, device_id))
    assert len(alarms) == 1
    return alarms[0]


async def _pressure_seen(svc: RunningService, device_id: str) -> bool:
    """Whether the fleet holds a pressure of the device (its reading went through the rules)."""
    return "pressure_mpa" in (await _effective(svc, device_id))["values"]


async def _effective(svc: RunningService, device_id: str) -> dict[str, Any]:
    r = await svc.http.get(f"/api/v1/devices/{device_id}", headers=svc.auth())
    assert r.status_code == 200, r.text
    return r.json()


async def test_unit_profile_and_device_thresholds_in_layers(settings: Settings, tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / f"{PROFILE}.json").write_text(json.dumps({
        "name": PROFILE, "description": "test hydrant", "kind": "water", "thresholds": {"pressure_low_mpa": 0.12},
    }))
    (profiles / "mx-test-pile.json").write_text(json.dumps({
        "name": "mx-test-pile", "description": "test pile", "kind": "charger", "thresholds": {"port_rated_a": 16},
    }))
    settings = settings.model_copy(update={"profiles_dir": profiles})
    async with running_service(settings) as svc:
        r = await svc.http.post("/api/v1/units", headers=svc.auth(), json={
            "unit_id": UNIT, "name": "泵房", "thresholds": {"pressure_mpa_min": 0.2}})  # the alias
        assert r.status_code == 201, r.text
        assert r.json()["thresholds"] == {"pressure_low_mpa": 0.2}
        bad = await svc.http.post("/api/v1/units", headers=svc.auth(),
                                  json={"name": "x", "thresholds": {"pressure_min": 1}})
        assert bad.status_code == 422 and "unknown threshold 'pressure_min'" in bad.text
        for device_id, extra in (("w-unit", {}), ("w-own", {"thresholds": {"pressure_low_mpa": 0.03}}),
                                 ("w-profile", {"profile": PROFILE}), ("w-later", {})):
            r = await svc.http.post("/api/v1/devices", headers=svc.auth(),
                                    json={"device_id": device_id, "kind": "water", "unit_id": UNIT, **extra})
            assert r.status_code == 201, r.text
        shown = {d: (await _effective(svc, d))["effective_thresholds"]["pressure_low_mpa"]
                 for d in ("w-unit", "w-own", "w-profile")}
        assert shown == {"w-unit": 0.2, "w-own": 0.03, "w-profile": 0.12}
        # a charger's port_rated_a may come from its profile (a product's rated current)
        pile = await svc.http.post("/api/v1/devices", headers=svc.auth(),
                                   json={"device_id": "c1", "kind": "charger", "profile": "mx-test-pile"})
        assert pile.status_code == 201, pile.text
        assert pile.json()["thresholds"] == {} and pile.json()["effective_thresholds"]["port_rated_a"] == 16
        bare = await svc.http.post("/api/v1/devices", headers=svc.auth(),
                                   json={"device_id": "c2", "kind": "charger", "profile": PROFILE})
        assert bare.status_code == 422 and "port_rated_a" in bare.text
        own = await _effective(svc, "w-own")
        assert own["thresholds"] == {"pressure_low_mpa": 0.03}
        assert own["effective_thresholds"]["pressure_drop_mpa"] == 0.05  # no layer sets it: the default

        t0 = int(time.time() * 1000) - 600_000
        # 0.1 MPa: above the default 0.05, below the unit's 0.2
        await _report(settings, "w-unit", 0.1, t0)
        alarm = await _raised_by(svc, "w-unit")
        assert alarm["rule"] == "water.pressure_low"
        # not below the device's own 0.03 nor the profile's 0.12 (the unit's 0.2 would raise both),
        # nor the unit's 0.2: the later readings below their limits raise the alarms, not these
        for device_id, first, then in (("w-own", 0.1, 0.02), ("w-profile", 0.15, 0.1)):
            await _report(settings, device_id, first, t0)
            await _report(settings, device_id, then, t0 + 60_000)
            alarm = await _raised_by(svc, device_id)
            assert alarm["count"] == 1, alarm
            assert alarm["first_seen"] == alarm["last_seen"], alarm  # raised by the second reading alone

        # 0.25 MPa: not below the unit's 0.2 ...
        await _report(settings, "w-later", 0.25, t0)
        await wait_for(lambda: _pressure_seen(svc, "w-later"))
        # ... but below its 0.3 once the unit's threshold is raised; w-own keeps its own
        r = await svc.http.post("/api/v1/units", headers=svc.auth(), json={
            "unit_id": UNIT, "name": "泵房", "thresholds": {"pressure_low_mpa": 0.3}})
        assert r.status_code == 200 and r.json()["thresholds"] == {"pressure_low_mpa": 0.3}
        assert (await _effective(svc, "w-later"))["effective_thresholds"]["pressure_low_mpa"] == 0.3
        assert (await _effective(svc, "w-own"))["effective_thresholds"]["pressure_low_mpa"] == 0.03
        fleet = svc.app.state.services.fleet
        column = fleet.thresholds["pressure_low_mpa"]
        assert column[fleet.slot("w-later")] == pytest.approx(0.3)
        assert column[fleet.slot("w-own")] == pytest.approx(0.03)
        unit = await svc.http.get(f"/api/v1/units/{UNIT}", headers=svc.auth())
        assert unit.json()["thresholds"] == {"pressure_low_mpa": 0.3}
        await _report(settings, "w-later", 0.25, t0 + 60_000)
        alarm = await _raised_by(svc, "w-later")
        assert alarm["count"] == 1 and alarm["first_seen"] == alarm["last_seen"], alarm


# --- the devices service's paths, on PostgreSQL without the whole app ------------------------------
async def _publish(topic: str, payload: bytes) -> None:
    """Downlink commands go nowhere: the test answers them itself."""


def _service(pool: asyncpg.Pool, profiles: dict[str, dict[str, float]]) -> DeviceService:
    fleet = Fleet()
    commands = CommandService(pool, fleet, _publish, topic_root="mxtest/layers", clock=lambda: 0)
    return DeviceService(pool, fleet, commands, clock=lambda: 0, profile_thresholds=profiles)


def _low(svc: DeviceService, device_id: str) -> float:
    """The pressure_low_mpa the fleet holds for a device (NaN: the default)."""
    return float(svc.fleet.thresholds["pressure_low_mpa"][svc.fleet.slot(device_id)])


async def _save_unit(pool: asyncpg.Pool, unit_id: str, thresholds: dict[str, float]) -> dict[str, Any]:
    async with pool.acquire() as conn:
        unit, _ = await upsert_unit(conn, UnitSpec.parse({"unit_id": unit_id, "name": unit_id,
                                                          "thresholds": thresholds}))
    return unit


async def test_load_import_follow_and_command_take_the_layers(pool: asyncpg.Pool) -> None:
    profiles = {PROFILE: {"pressure_low_mpa": 0.12}, "pile": {"port_rated_a": 10}}
    api = _service(pool, profiles)
    await api.unit_saved(await _save_unit(pool, "U1", {"pressure_low_mpa": 0.2}))
    await api.unit_saved(await _save_unit(pool, "U2", {}))
    report = await api.import_devices("\n".join([
        "device_id,kind,unit_id,profile,thresholds",
        "i-unit,water,U1,,", f"i-profile,water,U1,{PROFILE},", 'i-own,water,U1,,"{""pressure_mpa_min"": 0.03}"',
        f"i-bare,water,U2,{PROFILE}x,", "i-pile,charger,U2,pile,", "i-pile2,charger,U2,,",
    ]), "csv")
    assert (report.created, report.rejected) == (5, 1), report.as_dict()
    assert report.errors[0].device_id == "i-pile2" and "port_rated_a" in report.errors[0].reason
    assert float(api.fleet.thresholds["port_rated_a"][api.fleet.slot("i-pile")]) == 10
    expected = {"i-unit": 0.2, "i-profile": 0.12, "i-own": 0.03}
    assert {d: _low(api, d) for d in expected} == pytest.approx(expected)
    assert math.isnan(_low(api, "i-bare"))  # an unknown profile and a unit without thresholds: the default

    restarted = _service(pool, profiles)  # the load path: units, then devices with their layers
    await restarted.load()
    assert {d: _low(restarted, d) for d in expected} == pytest.approx(expected)
    assert math.isnan(_low(restarted, "i-bare"))

    worker = _service(pool, profiles)  # a scaled-out worker follows the registry
    await worker.load()
    since = await pool.fetchval("SELECT now()")
    await api.unit_saved(await _save_unit(pool, "U1", {"pressure_low_mpa": 0.3}))
    await api.unit_saved(await _save_unit(pool, "U2", {"pressure_low_mpa": 0.07}))
    assert await refresh(pool, worker.fleet, since, worker.layers) == 0  # no device row changed ...
    moved = {"i-unit": 0.3, "i-profile": 0.12, "i-own": 0.03, "i-bare": 0.07}
    for svc in (api, worker):  # ... yet every device of the changed units is re-set
        assert {d: _low(svc, d) for d in moved} == pytest.approx(moved)

    # a confirmed set_thresholds on a device without its own: its value now wins over the unit's
    cmd = await api.commands.send("i-unit", Kind.water, "set_thresholds",
                                  {"thresholds": {"pressure_mpa_min": 0.04}}, timeout_s=60, actor="test")
    assert _low(api, "i-unit") == pytest.approx(0.3)  # not before the device confirms it
    await api.commands.on_ack("i-unit", {"cmd_id": cmd["cmd_id"], "ok": True})
    assert _low(api, "i-unit") == pytest.approx(0.04)
    await api.unit_saved(await _save_unit(pool, "U1", {"pressure_low_mpa": 0.5}))
    assert _low(api, "i-unit") == pytest.approx(0.04) and _low(api, "i-profile") == pytest.approx(0.12)

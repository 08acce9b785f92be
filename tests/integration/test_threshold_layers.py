"""Thresholds in layers through the real service (CONTRACT §10, issue 18): a unit's
`pressure_low_mpa` raises `water_pressure_low` at a pressure the default would not, a profile's
wins over the unit's, a device's own over both, and changing the unit's re-applies at once."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

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

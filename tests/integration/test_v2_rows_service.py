"""Each row of CONTRACT §10's table of v2 alarm types through the real service (issue 18): one case
that raises the type with its severity, response and rule, and one just on the other side of the
threshold (or the event that must not raise it) that raises nothing of the type. The pure-core
edges are in tests/unit/test_core_v2_rules.py; this is the same table through MQTT, the pipeline,
the correlator and the alarm store, read back through `GET /api/v1/alarms`.

One service serves the module: every device is registered up front through the API, every case
published, the misses' readings seen applied by the fleet, then a sentinel alarm raised after them
(so a wrong alarm of a miss would be stored before it) and the hits awaited. `linkage_failed` is
not here: tests/integration/test_linkage_e2e.py raises and clears it with simulated actuators.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiomqtt
import pytest
import pytest_asyncio

from miaoxiang.settings import Settings
from tests.service import RunningService, fresh_database, running_service, service_settings, wait_for

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Msg:
    event: str
    at_s: int = 0  #: seconds after the case's first message (device time)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    """A device registered with `register`, publishing `messages`; `want` (severity, response, rule)
    of the one alarm of `type_` it raises, or None: none of that type (nor of `absent`)."""

    name: str
    type_: str
    kind: str
    messages: tuple[Msg, ...]
    want: tuple[str, str, str] | None
    register: dict[str, Any] = field(default_factory=dict)
    component: str | None = None
    command: str | None = None  #: sent through the API before the messages
    absent: tuple[str, ...] = ()

    @property
    def device_id(self) -> str:
        return "h9-" + self.name.replace("/", "-")

    @property
    def detector(self) -> str:
        """Whom the alarm names: a uitd's component is its own detector, another kind's is not."""
        return f"{self.device_id}:{self.component}" if self.component and self.kind == "uitd" else self.device_id


def report(at_s: int = 0, **data: Any) -> Msg:
    return Msg("report", at_s, data)


RATED = {"thresholds": {"port_rated_a": 16}}  # required of every charger
MAJOR, MINOR, CRITICAL = "major", "minor", "critical"
CASES = (
    Case("pressure_low/hit", "water_pressure_low", "water", (report(pressure_mpa=0.049),),
         (MAJOR, "verify", "water.pressure_low")),
    Case("pressure_low/miss", "water_pressure_low", "water", (report(pressure_mpa=0.05),), None),
    Case("pressure_high/hit", "water_pressure_high", "water", (report(pressure_mpa=1.21),),
         (MINOR, "verify", "water.pressure_high"), {"thresholds": {"pressure_high_mpa": 1.2}}),
    Case("pressure_high/miss", "water_pressure_high", "water", (report(pressure_mpa=1.2),), None,
         {"thresholds": {"pressure_high_mpa": 1.2}}),
    Case("pressure_high/unset", "water_pressure_high", "water", (report(pressure_mpa=5.0),), None),
    Case("pressure_drop/hit", "water_pressure_drop", "water",
         (report(pressure_mpa=0.30), report(30, pressure_mpa=0.25)), (MAJOR, "verify", "water.pressure_drop")),
    Case("pressure_drop/miss", "water_pressure_drop", "water",
         (report(pressure_mpa=0.30), report(30, pressure_mpa=0.26)), None),
    Case("level_low/hit", "water_level_low", "water", (report(level_m=0.99),),
         (MAJOR, "verify", "water.level_low"), {"thresholds": {"level_low_m": 1.0}}),
    Case("level_low/miss", "water_level_low", "water", (report(level_m=1.0),), None,
         {"thresholds": {"level_low_m": 1.0}}),
    Case("hydrant_open/event", "hydrant_open", "water", (Msg("hydrant_open"),),
         (MAJOR, "verify", "water.hydrant_open")),
    Case("hydrant_open/flow", "hydrant_open", "water", (report(flow_m3h=1.01),),
         (MAJOR, "verify", "water.hydrant_flow"), {"hydrant": True}),
    Case("hydrant_open/flow-miss", "hydrant_open", "water", (report(flow_m3h=1.0),), None, {"hydrant": True}),
    Case("hydrant_open/not-hydrant", "hydrant_open", "water", (report(flow_m3h=30.0),), None),
    Case("hydrant_damaged/impact", "hydrant_damaged", "water", (Msg("impact"),), (MAJOR, "verify", "water.impact")),
    Case("hydrant_damaged/tilt", "hydrant_damaged", "water", (report(tilt_deg=15.0),),
         (MAJOR, "verify", "water.hydrant_tilt")),
    Case("hydrant_damaged/miss", "hydrant_damaged", "water", (report(tilt_deg=14.9),), None),
    Case("charger_overheat/hit", "charger_overheat", "charger", (report(port_temp_c=[30.0, 70.0]),),
         (MAJOR, "verify", "charger.port_temp"), RATED),
    Case("charger_overheat/miss", "charger_overheat", "charger", (report(port_temp_c=[30.0, 69.9]),), None, RATED),
    Case("charger_overcurrent/hit", "charger_overcurrent", "charger",
         (report(port_current_a=[2.0, 16.1]), report(30, port_current_a=[16.1, 1.0])),
         (MAJOR, "verify", "charger.current"), RATED),
    Case("charger_overcurrent/miss", "charger_overcurrent", "charger",
         (report(port_current_a=[2.0, 16.0]), report(30, port_current_a=[16.0, 1.0])), None, RATED),
    Case("charger_leakage/major", "charger_leakage", "charger", (report(residual_current_ma=15.0),),
         (MAJOR, "verify", "charger.leakage_warn"), RATED),
    Case("charger_leakage/critical", "charger_leakage", "charger", (report(residual_current_ma=30.0),),
         (CRITICAL, "verify", "charger.leakage_critical"), RATED),
    Case("charger_leakage/miss", "charger_leakage", "charger", (report(residual_current_ma=14.9),), None, RATED),
    Case("pyrolysis/major", "pyrolysis_warning", "electrical", (report(pyrolysis_index=50.0),),
         (MAJOR, "verify", "pyrolysis.index")),
    Case("pyrolysis/critical", "pyrolysis_warning", "electrical", (report(pyrolysis_index=80.0),),
         (CRITICAL, "verify", "pyrolysis.critical")),
    Case("pyrolysis/alarm", "pyrolysis_warning", "electrical",
         (Msg("alarm", data={"alarm_code": "pyrolysis", "pyrolysis_index": 20.0}),),
         (MAJOR, "verify", "pyrolysis.alarm"), absent=("residual_current",)),
    Case("pyrolysis/miss", "pyrolysis_warning", "electrical", (report(pyrolysis_index=49.0),), None),
    Case("co_high/critical", "co_high", "gas", (report(co_ppm=300.0),), (CRITICAL, "immediate", "co.critical")),
    Case("co_high/miss", "co_high", "gas", (report(co_ppm=299.0),), None),
    Case("co_high/alarm", "co_high", "gas", (Msg("alarm", data={"gas_type": "co"}),),
         (MAJOR, "verify", "co.alarm"), absent=("gas_leak",)),
    Case("co_high/methane-alarm", "co_high", "gas", (Msg("alarm", data={"gas_type": "methane"}),), None),
    Case("power_fault/uitd", "power_fault", "uitd", (Msg("power_fail"),), (MINOR, "verify", "power.fail")),
    Case("power_fault/both", "power_fault", "uitd", (Msg("power_fail", data={"alarm_code": "mains_and_backup"}),),
         (MAJOR, "verify", "power.mains_and_backup")),
    Case("power_fault/smoke", "power_fault", "smoke", (Msg("power_fail"),), None),
    Case("panel_supervisory/hit", "panel_supervisory", "uitd", (Msg("supervisory"),),
         (MAJOR, "verify", "panel.supervisory"), component="1:1:9"),
    Case("panel_supervisory/smoke", "panel_supervisory", "smoke", (Msg("supervisory"),), None, component="1:1:9"),
    Case("breaker_tripped/hit", "breaker_tripped", "electrical", (Msg("breaker_tripped"),),
         (MINOR, "verify", "breaker.tripped")),
    Case("breaker_tripped/commanded", "breaker_tripped", "electrical", (Msg("breaker_tripped"),), None,
         command="breaker_trip"),
)
SENTINEL = Case("sentinel", "water_pressure_low", "water", (report(pressure_mpa=0.0),),
                (MAJOR, "verify", "water.pressure_low"))


def _broker(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("mqtt://").split(":")
    return host, int(port)


async def _publish(settings: Settings, cases: tuple[Case, ...], t0_ms: int) -> None:
    host, port = _broker(settings.mqtt_url or "")
    async with aiomqtt.Client(host, port) as pub:
        for case in cases:
            for m in case.messages:
                body = {"ts": t0_ms + m.at_s * 1000, "event": m.event, "data": m.data,
                        **({"component": case.component} if case.component else {})}
                await pub.publish(settings.topic("evt", case.kind, case.device_id), json.dumps(body), qos=1)


async def _applied(svc: RunningService, case: Case, t0_ms: int) -> bool:
    """Whether the fleet has applied the case's last message (its rules have run)."""
    r = await svc.http.get(f"/api/v1/devices/{case.device_id}", headers=svc.auth())
    assert r.status_code == 200, r.text
    last = r.json()["last_report_ts"]
    return last is not None and datetime.fromisoformat(last).timestamp() * 1000 >= t0_ms + case.messages[-1].at_s * 1000


async def _alarms(svc: RunningService, **params: str) -> list[dict[str, Any]]:
    r = await svc.http.get("/api/v1/alarms", params={"limit": "1000", **params}, headers=svc.auth())
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def _play(svc: RunningService, settings: Settings) -> list[dict[str, Any]]:
    """Register, command, publish, wait; every alarm the service stored."""
    for case in (*CASES, SENTINEL):
        r = await svc.http.post("/api/v1/devices", headers=svc.auth(),
                                json={"device_id": case.device_id, "kind": case.kind, **case.register})
        assert r.status_code == 201, r.text
    for case in CASES:
        if case.command:
            r = await svc.http.post(f"/api/v1/devices/{case.device_id}/commands", headers=svc.auth(),
                                    json={"cmd": case.command})
            assert r.status_code == 201, r.text
    t0 = int(time.time() * 1000) - 300_000
    await _publish(settings, CASES, t0)
    for case in CASES:
        if case.want is None:
            await wait_for(lambda c=case: _applied(svc, c, t0), timeout=20)
    await _publish(settings, (SENTINEL,), t0)
    await wait_for(lambda: _alarms(svc, device_id=SENTINEL.device_id, type=SENTINEL.type_), timeout=20)
    for case in CASES:
        if case.want is not None:
            await wait_for(lambda c=case: _alarms(svc, device_id=c.detector, type=c.type_), timeout=20)
    return await _alarms(svc)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stored(
    pg_admin_url: str, mqtt_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[list[dict[str, Any]]]:
    """Every alarm one service stored for the module's cases (in a database of the module's own, as
    the `database_url` fixture makes one per test)."""
    async with fresh_database(pg_admin_url) as url:
        settings = service_settings(url, mqtt_url, f"mxtest/{uuid.uuid4().hex[:10]}",
                                    tmp_path_factory.mktemp("v2rows"))
        async with running_service(settings) as svc:
            yield await _play(svc, settings)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_row(case: Case, stored: list[dict[str, Any]]) -> None:
    mine = [a for a in stored if case.detector in a["device_ids"]]
    of_type = [(a["severity"], a["response"], a["rule"]) for a in mine if a["type"] == case.type_]
    assert of_type == ([case.want] if case.want else []), mine
    assert [a["type"] for a in mine if a["type"] in case.absent] == []


def test_overheat_names_the_hottest_port(stored: list[dict[str, Any]]) -> None:
    (alarm,) = [a for a in stored if a["device_ids"] == ["h9-charger_overheat-hit"]]
    assert alarm["evidence"][0]["port"] == 2, alarm

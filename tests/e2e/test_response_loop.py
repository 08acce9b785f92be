"""The response loop end to end (CONTRACT §9, issue 17), against the real service with the
simulated responders of `simulators.responders` on their own local webhook receiver:

two smoke detectors of one unit alarm -> a `fire`, immediate, told at once to the unit's contact
and its street's grid worker (webhook messages carrying their links) -> they open their pages and
acknowledge -> the operator dispatches -> the micro stations and the fire brigade are told ->
a station arrives (near the unit) and gives feedback -> the operator resolves. Checked: the
notification rows and their states, the timeline's actors, `response_times` (all set, in order)
and `GET /api/v1/stats/response`.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from devices.kinds import Event
from miaoxiang.embedded import free_port
from miaoxiang.settings import Settings
from simulators.clock import SimClock
from simulators.fleet import SimDevice, SimFleet, build_fleet
from simulators.publish import play
from simulators.responders import QUICK_DELAYS, Action, SimResponders
from simulators.scenarios import Step
from simulators.session import (
    Target,
    configure_push_sources,
    fetch_alarms,
    publishers,
    register_fleet,
    simulated_responders,
)
from simulators.telemetry import lane_of, make_reading
from tests.service import running_service, wait_for

DEVICES, SEED = 80, 11
ADMIN = {"Authorization": "Bearer test-admin-token"}


def two_smoke_detectors(fleet: SimFleet) -> tuple[str, SimDevice, SimDevice]:
    """A unit with two smoke detectors that report over MQTT or an NB-IoT push (not OneNET)."""
    for unit in fleet.units:
        smoke = [d for d in fleet.devices_of(unit.unit_id)
                 if d.kind.name == "smoke" and d.uplink in ("mqtt", "ctwing", "generic")]
        if len(smoke) >= 2:
            return unit.unit_id, smoke[0], smoke[1]
    raise AssertionError("the fleet has no unit with two smoke detectors")


def alarm_steps(devices: tuple[SimDevice, ...], start_ms: int) -> list[Step]:
    return [Step(start_ms + i * 1000,
                 make_reading(d, Event.alarm, start_ms + i * 1000, {"smoke_obscuration_pct_m": 4.0 + i}),
                 lane_of(Event.alarm), d.transport)
            for i, d in enumerate(devices)]


def acted(sim: SimResponders, action: Action, alarm_id: str, role_prefix: str) -> list[str]:
    return [d.responder_id for d in sim.did(action, alarm_id) if d.responder_id.startswith(role_prefix)]


async def detail(http: httpx.AsyncClient, alarm_id: str) -> dict[str, Any]:
    answer = await http.get(f"/api/v1/alarms/{alarm_id}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


@pytest.mark.timeout(120)
async def test_fire_to_resolution_through_simulated_responders(settings: Settings) -> None:
    port = free_port()
    settings = settings.model_copy(update={"http_port": port, "public_url": f"http://127.0.0.1:{port}"})
    clock = SimClock.live()
    fleet = build_fleet(DEVICES, SEED)
    unit_id, a, b = two_smoke_detectors(fleet)
    unit = fleet.unit(unit_id)
    async with running_service(settings) as svc, httpx.AsyncClient(base_url=svc.base_url, timeout=30,
                                                                   headers=ADMIN) as http:
        await register_fleet(http, fleet)
        targets = await configure_push_sources(http, "loop")
        target = Target(base_url=svc.base_url, token="test-admin-token", mqtt_url=settings.mqtt_url or "",
                        topic_root=settings.topic(), device_tz=settings.device_tz)
        async with (simulated_responders(http, fleet, clock, seed=SEED, delays=QUICK_DELAYS) as sim,
                    publishers(target, fleet, http, targets) as route):
            stats = await play(alarm_steps((a, b), clock.now_ms()), route, clock=clock)
            assert stats.failed == 0, stats.errors

            async def fire() -> dict[str, Any] | None:
                found = await fetch_alarms(http)
                return next((x for x in found if x["type"] == "fire" and x["unit_id"] == unit_id), None)

            alarm = await wait_for(fire, timeout=20)
            fid = str(alarm["alarm_id"])
            assert alarm["response"] == "immediate"
            # level 1 at once: the unit's contact and its street's grid worker open their links and acknowledge
            await wait_for(lambda: acted(sim, "ack", fid, "sim-gw-") and acted(sim, "ack", fid, "sim-uc-"), timeout=20)
            assert acted(sim, "open", fid, "sim-uc-") == [f"sim-uc-{unit_id}"]
            assert not acted(sim, "ack", fid, "sim-ms-"), "no station is told before the dispatch"

            answer = await http.post(f"/api/v1/alarms/{fid}/dispatch", json={"note": "确认火情，调派微型消防站"})
            assert answer.status_code == 200, answer.text
            assert answer.json()["dispatched_at"] is not None
            await wait_for(lambda: acted(sim, "feedback", fid, "sim-ms-"), timeout=20)
            station = acted(sim, "arrive", fid, "sim-ms-")[0]

            answer = await http.post(f"/api/v1/alarms/{fid}/resolve", json={"classification": "fire", "note": "已扑灭"})
            assert answer.status_code == 200, answer.text
            await sim.idle()
            assert sim.errors == []
            assert all(d.status in (200, 204) for d in sim.done)

        # every notification of the fire, by role: sent, and acked where the responder acknowledged
        notes = (await http.get(f"/api/v1/alarms/{fid}/notifications")).json()["items"]
        rows = {(n["responder"]["role"], n["responder"]["responder_id"]): n for n in notes if n["responder"]}
        assert len(rows) == len(notes), "one row per responder: no group channel, nobody told twice"
        roles = {role for role, _ in rows}
        assert {"unit_contact", "grid_worker", "micro_station", "fire_brigade"} <= roles
        assert {(n["level"], n["reason"]) for (role, _), n in rows.items() if role == "unit_contact"} == {(0, "level")}
        assert rows[("unit_contact", f"sim-uc-{unit_id}")]["state"] == "acked"
        assert {(n["level"], n["reason"]) for (role, _), n in rows.items() if role == "grid_worker"} == {(1, "level")}
        for (role, rid), n in rows.items():
            assert n["channel"] == f"sim-{rid}" and n["channel_type"] == "webhook"
            assert n["state"] in ("sent", "acked") and n["sent_at"] is not None, n
            if role in ("micro_station", "fire_brigade"):
                assert n["reason"] == "dispatch"
        acked = {rid for (_, rid), n in rows.items() if n["state"] == "acked"}
        assert {d.responder_id for d in sim.did("ack", fid)} <= acked
        nearest = [rid for role, rid in rows if role == "micro_station"]
        assert 1 <= len(nearest) <= 3 and station in nearest

        body = await detail(http, fid)
        assert body["status"] == "resolved" and body["dispatched_at"] is not None
        timeline = [(e["action"], e["actor"]) for e in body["timeline"]]
        assert ("responder_acked", f"responder:sim-uc-{unit_id}") in timeline
        assert ("arrived", f"responder:{station}") in timeline
        assert ("feedback", f"responder:{station}") in timeline
        assert any(action == "dispatched" and actor == "admin" for action, actor in timeline), timeline
        assert any(action == "resolved" and actor == "admin" for action, actor in timeline), timeline
        assert any(action == "notified" for action, _ in timeline)
        times = body["response_times"]
        assert None not in times.values(), times
        assert 0 <= times["notified_s"] <= times["acked_s"] <= times["arrived_s"] <= times["resolved_s"], times

        stats = (await http.get("/api/v1/stats/response", params={"by": "region"})).json()["items"]
        mine = next(s for s in stats if s["region"] == unit.region)
        assert mine["alarms"] >= 1
        for name in ("notified_s", "acked_s", "arrived_s", "resolved_s"):
            assert mine[name]["count"] >= 1 and mine[name]["median"] is not None, (name, mine)

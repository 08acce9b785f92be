"""Linkage end to end (CONTRACT §10) on the real Mosquitto and PostgreSQL: the service with its
linkage runner, and simulated actuators (simulators/actuators.py) answering on `ack` and reporting
the state they reach."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt
import pytest

from alerting.response import tokens
from devices.fleet import HYDRANT
from miaoxiang.settings import Settings
from simulators.actuators import Actuator, Actuators
from tests.service import RunningService, running_service, wait_for

pytestmark = pytest.mark.integration


def _broker(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("mqtt://").split(":")
    return host, int(port)


@contextlib.asynccontextmanager
async def linked(settings: Settings, actuators: list[Actuator]) -> AsyncIterator[RunningService]:
    """The service (commands time out after 1 s, twice retried) with the actuators on the broker."""
    settings = settings.model_copy(update={"command_timeout_s": 1.0})
    host, port = _broker(settings.mqtt_url or "")
    sims = Actuators(host, port, settings.topic(), actuators)
    async with running_service(settings) as svc, asyncio.TaskGroup() as tg:
        task = tg.create_task(sims.run())
        await asyncio.wait_for(sims.ready.wait(), 10)
        try:
            yield svc
        finally:
            task.cancel()


async def publish(settings: Settings, kind: str, device_id: str, event: str, data: dict[str, Any]) -> None:
    host, port = _broker(settings.mqtt_url or "")
    report = {"ts": round(time.time() * 1000), "event": event, "data": data}
    async with aiomqtt.Client(host, port) as pub:
        await pub.publish(settings.topic("evt", kind, device_id), json.dumps(report), qos=1)


async def setup_unit(svc: RunningService, unit_id: str, policy: dict[str, str], industry: str = "commercial",
                     devices: tuple[dict[str, Any], ...] = ()) -> None:
    h = svc.auth()
    unit = {"unit_id": unit_id, "name": unit_id, "industry": industry}
    r = await svc.http.post("/api/v1/units", headers=h, json=unit)
    assert r.status_code == 201, r.text
    r = await svc.http.put(f"/api/v1/units/{unit_id}/linkage", headers=h, json=policy)
    assert r.status_code == 200, r.text
    for device in devices:
        r = await svc.http.post("/api/v1/devices", headers=h, json={**device, "unit_id": unit_id})
        assert r.status_code == 201, r.text


async def alarm_of(svc: RunningService, device_id: str, type_: str) -> dict[str, Any] | None:
    r = await svc.http.get("/api/v1/alarms", headers=svc.auth(), params={"device_id": device_id, "type": type_})
    items = r.json()["items"]
    return items[0] if items else None


async def timeline(svc: RunningService, alarm_id: str) -> list[dict[str, Any]]:
    return (await svc.http.get(f"/api/v1/alarms/{alarm_id}", headers=svc.auth())).json()["timeline"]


async def entries(svc: RunningService, alarm_id: str, action: str) -> list[dict[str, Any]]:
    return [e for e in await timeline(svc, alarm_id) if e["action"] == action]


async def readings(svc: RunningService, device_id: str) -> list[str]:
    r = await svc.http.get(f"/api/v1/devices/{device_id}/readings", headers=svc.auth())
    return [item["event"] for item in r.json()["items"]]


async def test_gas_leak_closes_the_valve_and_opening_it_again_needs_an_override(settings: Settings) -> None:
    valve = Actuator("g1", "gas")
    async with linked(settings, [valve]) as svc:
        await setup_unit(svc, "U1", {"gas_valve": "auto"}, devices=({"device_id": "g1", "kind": "gas"},))
        await publish(settings, "gas", "g1", "alarm", {"gas_lel_pct": 30.0, "valve": "open"})
        alarm = await wait_for(lambda: alarm_of(svc, "g1", "gas_leak"), 15)
        assert (alarm["severity"], alarm["response"]) == ("critical", "immediate")
        sent = await wait_for(lambda: entries(svc, alarm["alarm_id"], "linkage_sent"), 15)
        assert sent[0]["actor"] == "linkage" and sent[0]["detail"]["cmd"] == "valve_close"
        assert [c["cmd"] for c in valve.received] == ["valve_close"]
        await wait_for(lambda: entries(svc, alarm["alarm_id"], "linkage_acked"), 15)
        await wait_for(lambda: _has(readings(svc, "g1"), "valve_closed"), 15)
        listed = (await svc.http.get(f"/api/v1/alarms/{alarm['alarm_id']}/linkage", headers=svc.auth())).json()
        assert [(i["cmd"], i["mode"], i["state"]) for i in listed["items"]] == [("valve_close", "auto", "acked")]
        # a repeat of the leak sends nothing more (once per alarm)
        await publish(settings, "gas", "g1", "alarm", {"gas_lel_pct": 31.0, "valve": "closed"})
        await asyncio.sleep(2)
        assert [c["cmd"] for c in valve.received] == ["valve_close"]

        r = await svc.http.post("/api/v1/tokens", headers=svc.auth(), json={"name": "op-li", "role": "operator"})
        op = {"Authorization": f"Bearer {r.json()['token']}"}
        url = "/api/v1/devices/g1/commands"
        refused = await svc.http.post(url, headers=op, json={"cmd": "valve_open"})
        assert refused.status_code == 409, refused.text
        no_note = await svc.http.post(url, headers=op, json={"cmd": "valve_open", "override": True})
        assert no_note.status_code == 409
        body = {"cmd": "valve_open", "override": True, "note": "已排查，恢复供气"}
        ok = await svc.http.post(url, headers=op, json=body)
        assert ok.status_code == 201, ok.text
        overridden = await wait_for(lambda: entries(svc, alarm["alarm_id"], "linkage_overridden"), 10)
        assert overridden[0]["actor"] == "op-li" and overridden[0]["detail"]["note"] == "已排查，恢复供气"
        await wait_for(lambda: _has(readings(svc, "g1"), "valve_opened"), 15)


async def test_silent_valve_raises_linkage_failed_which_clears_on_the_state(settings: Settings) -> None:
    valve = Actuator("g2", "gas", silent=True)
    async with linked(settings, [valve]) as svc:
        await setup_unit(svc, "U2", {"gas_valve": "auto"}, devices=({"device_id": "g2", "kind": "gas"},))
        await publish(settings, "gas", "g2", "alarm", {"gas_lel_pct": 30.0, "valve": "open"})
        failed = await wait_for(lambda: alarm_of(svc, "g2", "linkage_failed"), 30)
        assert (failed["severity"], failed["response"], failed["status"]) == ("major", "verify", "active_unack")
        assert len(valve.received) == 3  # the first attempt and two retries
        leak = await alarm_of(svc, "g2", "gas_leak")
        assert leak is not None
        assert await entries(svc, leak["alarm_id"], "linkage_timeout")
        # the valve closes after all (by hand, or late): its state clears linkage_failed
        await publish(settings, "gas", "g2", "valve_closed", {"valve": "closed"})

        async def cleared() -> bool:
            alarm = await alarm_of(svc, "g2", "linkage_failed")
            return alarm is not None and alarm["status"] == "cleared_unack"

        await wait_for(cleared, 20)


async def test_arc_fault_trips_an_auto_breaker_and_never_a_never_one(settings: Settings) -> None:
    auto, never = Actuator("e1", "electrical"), Actuator("e2", "electrical")
    async with linked(settings, [auto, never]) as svc:
        devices = ({"device_id": "e1", "kind": "electrical", "linkage": "auto"},
                   {"device_id": "e2", "kind": "electrical", "linkage": "never"})
        await setup_unit(svc, "U3", {"breaker": "auto"}, devices=devices)
        for device_id in ("e1", "e2"):
            await publish(settings, "electrical", device_id, "report", {"arc_faults": 20, "breaker": "closed"})
        alarm = await wait_for(lambda: alarm_of(svc, "e1", "arc_fault"), 15)
        await wait_for(lambda: entries(svc, alarm["alarm_id"], "linkage_sent"), 15)
        await wait_for(lambda: _has(readings(svc, "e1"), "breaker_tripped"), 15)
        other = await wait_for(lambda: alarm_of(svc, "e2", "arc_fault"), 15)
        await asyncio.sleep(2)
        assert [c["cmd"] for c in auto.received] == ["breaker_trip"] and never.received == []
        assert await entries(svc, other["alarm_id"], "linkage_sent") == []
        assert await entries(svc, other["alarm_id"], "linkage_offered") == []
        # the trip the service asked for raises no breaker_tripped alarm
        await asyncio.sleep(1)
        assert await alarm_of(svc, "e1", "breaker_tripped") is None


async def test_hot_charger_port_is_cut_off_and_a_refusing_valve_fails_at_once(settings: Settings) -> None:
    pile, valve = Actuator("c1", "charger"), Actuator("g6", "gas", refusing=True)
    async with linked(settings, [pile, valve]) as svc:
        devices = ({"device_id": "c1", "kind": "charger", "thresholds": {"port_rated_a": 16}},
                   {"device_id": "g6", "kind": "gas"})
        await setup_unit(svc, "U6", {"charger_port": "auto", "gas_valve": "auto"}, devices=devices)
        await publish(settings, "charger", "c1", "report", {"port_temp_c": [35.0, 82.0, 30.0], "ports_active": 2})
        alarm = await wait_for(lambda: alarm_of(svc, "c1", "charger_overheat"), 15)
        await wait_for(lambda: _has(readings(svc, "c1"), "port_cutoff"), 15)
        assert [(c["cmd"], c["params"]) for c in pile.received] == [("port_cutoff", {"port": 2})]
        sent = await entries(svc, alarm["alarm_id"], "linkage_sent")
        assert sent[0]["actor"] == "linkage" and sent[0]["detail"]["params"] == {"port": 2}

        await publish(settings, "gas", "g6", "alarm", {"gas_lel_pct": 30.0, "valve": "open"})
        failed = await wait_for(lambda: alarm_of(svc, "g6", "linkage_failed"), 15)
        assert failed["status"] == "active_unack" and len(valve.received) == 1  # answered: no retry
        leak = await alarm_of(svc, "g6", "gas_leak")
        assert leak is not None and await entries(svc, leak["alarm_id"], "linkage_failed")


async def test_a_restart_sends_nothing_twice_and_links_what_comes_next(settings: Settings) -> None:
    valve = Actuator("g7", "gas")
    async with linked(settings, [valve]) as svc:
        await setup_unit(svc, "U7", {"gas_valve": "auto"}, devices=({"device_id": "g7", "kind": "gas"},))
        await publish(settings, "gas", "g7", "alarm", {"gas_lel_pct": 30.0, "valve": "open"})
        first = await wait_for(lambda: alarm_of(svc, "g7", "gas_leak"), 15)
        await wait_for(lambda: entries(svc, first["alarm_id"], "linkage_acked"), 15)
        h = svc.auth()
        r = await svc.http.post(f"/api/v1/alarms/{first['alarm_id']}/resolve", headers=h,
                                json={"classification": "test", "note": "drill"})
        assert r.status_code == 200
    async with linked(settings, [valve]) as svc:  # the runner replays the events since its saved place
        await asyncio.sleep(3)
        assert [c["cmd"] for c in valve.received] == ["valve_close"]
        await publish(settings, "gas", "g7", "alarm", {"gas_lel_pct": 33.0, "valve": "open"})

        async def second() -> dict[str, Any] | None:
            alarm = await alarm_of(svc, "g7", "gas_leak")
            return alarm if alarm is not None and alarm["alarm_id"] != first["alarm_id"] else None

        alarm = await wait_for(second, 15)
        await wait_for(lambda: entries(svc, alarm["alarm_id"], "linkage_acked"), 15)
        assert [c["cmd"] for c in valve.received] == ["valve_close", "valve_close"]


async def test_confirm_offers_and_an_operator_sends(settings: Settings) -> None:
    valve = Actuator("g4", "gas")
    async with linked(settings, [valve]) as svc:
        await setup_unit(svc, "U4", {"gas_valve": "confirm"}, devices=({"device_id": "g4", "kind": "gas"},))
        await publish(settings, "gas", "g4", "alarm", {"gas_lel_pct": 40.0, "valve": "open"})
        alarm = await wait_for(lambda: alarm_of(svc, "g4", "gas_leak"), 15)
        offered = await wait_for(lambda: entries(svc, alarm["alarm_id"], "linkage_offered"), 15)
        assert offered[0]["actor"] == "linkage" and valve.received == []
        url = f"/api/v1/alarms/{alarm['alarm_id']}/linkage"
        r = await svc.http.post(url, headers=svc.auth())
        assert r.status_code == 200, r.text
        assert r.json()["cmd"] == "valve_close"
        await wait_for(lambda: _has(readings(svc, "g4"), "valve_closed"), 15)
        sent = await entries(svc, alarm["alarm_id"], "linkage_sent")
        assert sent[0]["actor"] != "linkage" and sent[0]["detail"]["offered"] is True
        assert (await svc.http.post(url, headers=svc.auth())).status_code == 409  # nothing offered any more


async def test_responder_page_offers_linkage_to_unit_contacts_only(settings: Settings) -> None:
    valve = Actuator("g5", "gas")
    async with linked(settings, [valve]) as svc:
        await setup_unit(svc, "U5", {"gas_valve": "confirm"}, devices=({"device_id": "g5", "kind": "gas"},))
        await publish(settings, "gas", "g5", "alarm", {"gas_lel_pct": 40.0, "valve": "open"})
        alarm = await wait_for(lambda: alarm_of(svc, "g5", "gas_leak"), 15)
        await wait_for(lambda: entries(svc, alarm["alarm_id"], "linkage_offered"), 15)
        pool = svc.app.state.services.pool
        links = {}
        for rid, role in (("contact-1", "unit_contact"), ("grid-1", "grid_worker")):
            await pool.execute("INSERT INTO responders (responder_id, name, role, unit_ids) VALUES ($1, $1, $2, $3)",
                               rid, role, ["U5"])
            links[role] = await tokens.issue(pool, int(alarm["alarm_id"]), responder_id=rid)
        grid_page = (await svc.http.get(f"/r/{links['grid_worker']}")).text
        assert "/linkage" not in grid_page
        grid = f"/r/{links['grid_worker']}/linkage"
        assert (await svc.http.post(grid, data={"cmd": "valve_close"})).status_code == 403
        page = (await svc.http.get(f"/r/{links['unit_contact']}")).text
        assert "关闭燃气阀门" in page and "valve_open" not in page
        contact = f"/r/{links['unit_contact']}/linkage"
        assert (await svc.http.post(contact, data={"cmd": "valve_open"})).status_code == 422
        r = await svc.http.post(contact, data={"cmd": "valve_close"})
        assert r.status_code == 204, r.text
        await wait_for(lambda: _has(readings(svc, "g5"), "valve_closed"), 15)
        sent = await entries(svc, alarm["alarm_id"], "linkage_sent")
        assert sent[0]["actor"] == "responder:contact-1"
        assert (await svc.http.post(contact, data={})).status_code == 409
        assert "/linkage" not in (await svc.http.get(f"/r/{links['unit_contact']}")).text


async def test_unit_policy_routes(settings: Settings) -> None:
    async with running_service(settings) as svc:
        h = svc.auth()
        await setup_unit(svc, "H1", {}, industry="hospital")
        url = "/api/v1/units/H1/linkage"
        assert (await svc.http.get(url, headers=h)).json() == {"gas_valve": "off", "breaker": "off",
                                                                "charger_port": "off"}
        assert (await svc.http.put(url, headers=h, json={"breaker": "auto"})).status_code == 409
        assert (await svc.http.put(url, headers=h, json={"breaker": "sometimes"})).status_code == 422
        assert (await svc.http.put(url, headers=h, json={"valve": "auto"})).status_code == 422
        r = await svc.http.put(url, headers=h, json={"gas_valve": "auto"})
        assert r.json() == {"gas_valve": "auto", "breaker": "off", "charger_port": "off"}
        r = await svc.http.put(url, headers=h, json={"breaker": "confirm"})
        assert r.json() == {"gas_valve": "auto", "breaker": "confirm", "charger_port": "off"}
        assert (await svc.http.put("/api/v1/units/nope/linkage", headers=h, json={})).status_code == 404
        # registration: linkage and hydrant stored; a charger needs port_rated_a
        reg = await svc.http.post("/api/v1/devices", headers=h, json={
            "device_id": "w1", "kind": "water", "unit_id": "H1", "hydrant": True, "linkage": "never"})
        assert reg.status_code == 201 and (reg.json()["hydrant"], reg.json()["linkage"]) == (True, "never")
        bad = [{"device_id": "c1", "kind": "charger"}, {"device_id": "g9", "kind": "gas", "linkage": "auto"},
               {"device_id": "s9", "kind": "smoke", "hydrant": True}, {"device_id": "s8", "kind": "smoke",
                                                                      "linkage": "sometimes"}]
        for body in bad:
            assert (await svc.http.post("/api/v1/devices", headers=h, json=body)).status_code == 422, body
        ok = await svc.http.post("/api/v1/devices", headers=h, json={
            "device_id": "c1", "kind": "charger", "thresholds": {"port_rated_a": 16}})
        assert ok.status_code == 201, ok.text
        csv = "device_id,kind,linkage,hydrant\nw2,water,confirm,true\ne5,electrical,auto,\n"
        r = await svc.http.post("/api/v1/devices/import", headers={**h, "content-type": "text/csv"}, content=csv)
        assert r.json()["created"] == 2, r.text
        got = (await svc.http.get("/api/v1/devices/w2", headers=h)).json()
        assert (got["linkage"], got["hydrant"]) == ("confirm", True)
        fleet = svc.app.state.services.fleet
        assert [bool(int(fleet.flags[fleet.slot(d)]) & HYDRANT) for d in ("w1", "w2", "c1")] == [True, True, False]


async def _has(items: Any, wanted: str) -> bool:
    return wanted in await items

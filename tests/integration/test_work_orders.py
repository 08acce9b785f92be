"""Work orders and maintenance with an end (CONTRACT §11) on real PostgreSQL: every automatic
condition just before and just after its time (an injected clock), one live order per (device,
kind), assignment and notices, verification when the devices report healthy, overdue flags and
notices at the due day's end in MIAOXIANG_DEVICE_TZ, CSV, token scope and cursors; maintenance
`until`, its 7-day bound, who set it, and its end by the sweep."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from alerting.workorders.api import router
from alerting.workorders.sweep import Sweep
from devices.api import router as devices_router
from devices.auth import create_token
from devices.commands import CommandService
from devices.fleet import FLAPPING, LOW_BATTERY, OFFLINE, ONLINE, TAMPER, Fleet
from devices.kinds import Kind
from devices.outbound import OutboundPolicy
from devices.service import DeviceService
from miaoxiang.migrate import migrate
from miaoxiang.settings import DEFAULT_MIGRATIONS_DIR
from tests.lifespan_state import with_services

pytestmark = pytest.mark.integration
TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 3, 10, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
ZG = "江西省/赣州市/章贡区"
DH = "江西省/南昌市/东湖区"
DEVICES = {  # device: (kind, unit)
    "d-fault": (Kind.smoke, "u-zg"), "d-fault-cleared": (Kind.smoke, "u-zg"), "d-off": (Kind.smoke, "u-zg"),
    "d-batt": (Kind.smoke, "u-zg"), "d-tamp": (Kind.smoke, "u-zg"), "d-flap": (Kind.smoke, "u-zg"),
    "d-false": (Kind.smoke, "u-zg"), "d-false-old": (Kind.smoke, "u-zg"), "d-ok": (Kind.smoke, "u-zg"),
    "uitd-1": (Kind.uitd, "u-zg"), "d-dh": (Kind.smoke, "u-dh"), "d-quar": (Kind.smoke, "u-zg"),
}


class Clock:
    def __init__(self) -> None:
        self.at = NOW

    def __call__(self) -> int:
        return int(self.at.timestamp() * 1000)


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


@dataclass
class World:
    http: httpx.AsyncClient
    pool: asyncpg.Pool
    fleet: Fleet
    clock: Clock
    sweep: Sweep
    operator: str
    dh_viewer: str

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.operator}"}

    def slot(self, device_id: str) -> int:
        return self.fleet.slot(device_id)

    async def orders(self, **params: Any) -> list[dict[str, Any]]:
        r = await self.http.get("/api/v1/work-orders", params={"limit": 1000, **params}, headers=self.auth())
        assert r.status_code == 200, r.text
        return list(r.json()["items"])

    async def pairs(self, **params: Any) -> set[tuple[str, str]]:
        return {(o["device_ids"][0] if o["device_ids"] else "", o["kind"]) for o in await self.orders(**params)}


async def alarm(pool: asyncpg.Pool, device_id: str, type_: str, status: str, first_seen: datetime,
                classification: str | None = None) -> None:
    await pool.execute(
        """INSERT INTO alarms (alarm_key, type, severity, response, status, device_ids, unit_id, region, first_seen,
                               last_seen, rule, classification, resolved_at)
           VALUES ($1, $2, 'minor', 'verify', $3, $4, 'u-zg', $5, $6, $6, 'test', $7, $8)""",
        f"device:{device_id}", type_, status, [device_id], ZG, first_seen, classification,
        first_seen + timedelta(minutes=5) if status == "resolved" else None)


async def shield(pool: asyncpg.Pool, point: str, since: datetime, cleared: datetime | None = None) -> None:
    """A shielded point as `alerting.shields` keeps it from the panel's status reports."""
    await pool.execute(
        "INSERT INTO panel_shields (device_id, component, since, cleared_at) VALUES ('uitd-1', $1, $2, $3)",
        point, since, cleared)


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    async with pool.acquire() as conn:
        await migrate(conn, DEFAULT_MIGRATIONS_DIR)
        await conn.execute("INSERT INTO units (unit_id, name, region, industry) VALUES "
                           "('u-zg', '章贡小区', $1, 'residential'), ('u-dh', '东湖市场', $2, 'commercial')", ZG, DH)
        for d, (kind, unit) in DEVICES.items():
            await conn.execute("INSERT INTO devices (device_id, kind, unit_id, quarantined) VALUES ($1, $2, $3, $4)",
                               d, kind.name, unit, d == "d-quar")
    fleet, clock = Fleet(), Clock()
    fleet.set_unit("u-zg", region=ZG)
    fleet.set_unit("u-dh", region=DH)
    for d, (kind, unit) in DEVICES.items():
        s = fleet.upsert(d, kind, unit_id=unit, quarantined=d == "d-quar")
        fleet.flags[s] |= ONLINE
        fleet.last_seen_ms[s] = ms(NOW - timedelta(hours=1))
    sweep = Sweep(pool, fleet, clock, TZ)

    async def publish(_topic: str, _payload: bytes) -> None:
        raise AssertionError("no command is sent here")

    devices = DeviceService(pool, fleet, CommandService(pool, fleet, publish, topic_root="t", clock=clock), clock=clock)
    app = FastAPI()
    app.include_router(router)
    app.include_router(devices_router)
    services = SimpleNamespace(admin_token=SecretStr("admin"), pool=pool, fleet=fleet, risk=None, devices=devices,
                               outbound=OutboundPolicy.parse(""), supervision=sweep)
    operator = await create_token(pool, "张工", "operator", [])
    dh_viewer = await create_token(pool, "dh", "viewer", [DH])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(with_services(app, services)),
                                 base_url="http://t") as http:
        yield World(http, pool, fleet, clock, sweep, operator, dh_viewer)
    await pool.close()


async def test_each_condition_opens_an_order_after_its_time_and_not_before(world: World) -> None:
    w = world
    await alarm(w.pool, "d-fault", "device_fault", "active_unack", NOW - timedelta(hours=23))
    await alarm(w.pool, "d-fault-cleared", "device_fault", "cleared_unack", NOW - timedelta(hours=48))
    off = w.slot("d-off")
    w.fleet.flags[off] = OFFLINE
    w.fleet.offline_since_ms[off] = ms(NOW - timedelta(hours=71))
    for d, flag in (("d-batt", LOW_BATTERY), ("d-tamp", TAMPER), ("d-flap", FLAPPING), ("d-quar", LOW_BATTERY)):
        w.fleet.flags[w.slot(d)] |= flag
    for days in (1, 10, 29):
        await alarm(w.pool, "d-false", "smoke", "resolved", NOW - timedelta(days=days), "false_alarm")
    for days in (1, 10, 31):  # the third one lies outside the 30 days
        await alarm(w.pool, "d-false-old", "smoke", "resolved", NOW - timedelta(days=days), "false_alarm")
    await alarm(w.pool, "d-ok", "smoke", "resolved", NOW - timedelta(days=1), "test")
    await shield(w.pool, "1:1:3:7", NOW - timedelta(hours=23))
    await shield(w.pool, "1:1:3:8", NOW - timedelta(days=5), cleared=NOW - timedelta(days=1))

    first = await w.sweep.once()
    assert await w.pairs() == {("d-batt", "battery"), ("d-tamp", "tamper"), ("d-flap", "false_alarms"),
                               ("d-false", "false_alarms")}
    assert len(first["opened"]) == 4
    by_device = {o["device_ids"][0]: o for o in await w.orders()}
    assert by_device["d-false"]["reason"] == "30 天内误报 3 次 / 3 false alarms in 30 days"
    assert by_device["d-batt"]["state"] == "open" and by_device["d-batt"]["opened_by"] == "system"
    assert by_device["d-batt"]["due"] == "2026-04-30" and by_device["d-batt"]["unit_id"] == "u-zg"
    assert [h["action"] for h in by_device["d-batt"]["history"]] == ["opened"]

    w.clock.at = NOW + timedelta(hours=2)
    second = await w.sweep.once()
    assert {(o["device_ids"][0], o["kind"]) for o in await w.orders() if o["work_order_id"] in second["opened"]} == {
        ("d-fault", "repair"), ("d-off", "reconnect"), ("uitd-1", "shielded")}
    shielded = next(o for o in await w.orders(kind="shielded"))
    assert "1:1:3:7" in shielded["reason"] and "25" in shielded["reason"]
    assert ("d-false-old", "false_alarms") not in await w.pairs() and ("d-quar", "battery") not in await w.pairs()
    assert ("d-fault-cleared", "repair") not in await w.pairs()

    w.clock.at = NOW + timedelta(hours=3)
    assert (await w.sweep.once())["opened"] == []  # within open_every_s: conditions are not looked at again
    w.clock.at = NOW + timedelta(hours=4)
    assert (await w.sweep.once())["opened"] == []  # and then nothing opens twice
    assert len(await w.orders()) == 7


async def test_one_live_order_per_device_and_kind_by_hand_too(world: World) -> None:
    w = world
    w.fleet.flags[w.slot("d-batt")] |= LOW_BATTERY
    await w.sweep.once()
    [auto] = await w.orders()
    r = await w.http.post("/api/v1/work-orders", json={"kind": "battery", "device_ids": ["d-batt"], "reason": "换电池"},
                          headers=w.auth())
    assert r.status_code == 409 and str(auto["work_order_id"]) in r.json()["detail"]
    r = await w.http.post("/api/v1/work-orders", json={"device_ids": ["d-batt", "d-ok"], "reason": "消防通道堵塞"},
                          headers=w.auth())
    assert r.status_code == 201, r.text
    hand = r.json()
    assert (hand["kind"], hand["unit_id"], hand["opened_by"], hand["due"]) == ("hidden_danger", "u-zg", "张工",
                                                                                "2026-04-30")
    assert hand["overdue"] is False and hand["state"] == "open"
    for bad in ({"device_ids": ["d-ok", "d-dh"], "reason": "x"}, {"device_ids": ["nope"], "reason": "x"},
                {"reason": "x"}, {"unit_id": "u-zg", "reason": ""}, {"unit_id": "u-zg", "reason": "x", "kind": "bad"},
                {"unit_id": "u-zg", "reason": "x", "assignee": "nobody"}):
        r = await w.http.post("/api/v1/work-orders", json=bad, headers=w.auth())
        assert r.status_code == 422, (bad, r.text)
    assert (await w.http.post("/api/v1/work-orders", json={"unit_id": "u-zg", "reason": "x"},
                              headers=w.auth(w.dh_viewer))).status_code == 403  # a viewer opens nothing
    r = await w.http.patch(f"/api/v1/work-orders/{auto['work_order_id']}", json={"state": "cancelled"},
                           headers=w.auth())
    assert r.status_code == 200 and r.json()["state"] == "cancelled" and r.json()["closed_at"] is not None
    await w.sweep.once()  # still low on battery: a new order, the cancelled one stays
    assert (await w.sweep.once())["opened"] == []
    w.clock.at = NOW + timedelta(minutes=10)
    assert len((await w.sweep.once())["opened"]) == 1
    assert sorted(o["state"] for o in await w.orders(kind="battery")) == ["cancelled", "open"]


async def test_assign_fix_and_verify_when_the_devices_report_healthy(world: World) -> None:
    w = world
    await w.pool.execute("INSERT INTO responders (responder_id, name, role, regions) VALUES "
                         "('wang', '王师傅', 'maintainer', $1)", [ZG])
    w.fleet.flags[w.slot("d-batt")] |= LOW_BATTERY
    await w.sweep.once()
    [order] = await w.orders()
    url = f"/api/v1/work-orders/{order['work_order_id']}"
    assert (await w.http.patch(url, json={"assignee": "nobody"}, headers=w.auth())).status_code == 422
    assert (await w.http.patch(url, json={"state": "verified"}, headers=w.auth())).status_code == 409
    assert (await w.http.patch(url, json={"colour": "red"}, headers=w.auth())).status_code == 422
    r = await w.http.patch(url, json={"assignee": "wang"}, headers=w.auth())
    assert r.status_code == 200 and (r.json()["state"], r.json()["assignee"]) == ("assigned", "wang")
    assert [(n["responder_id"], n["reason"]) for n in r.json()["notices"]] == [("wang", "assigned")]
    w.clock.at = NOW + timedelta(hours=1)
    r = await w.http.patch(url, json={"state": "fixed"}, headers=w.auth())
    assert r.json()["state"] == "fixed"
    assert (await w.http.patch(url, json={"state": "verified"}, headers=w.auth())).status_code == 409  # has devices

    w.clock.at = NOW + timedelta(hours=2)
    assert (await w.sweep.once())["verified"] == []  # still low on battery
    w.fleet.flags[w.slot("d-batt")] = int(w.fleet.flags[w.slot("d-batt")]) & ~LOW_BATTERY
    assert (await w.sweep.once())["verified"] == []  # not heard from since it was fixed
    w.fleet.last_seen_ms[w.slot("d-batt")] = ms(NOW + timedelta(hours=1, minutes=30))
    assert (await w.sweep.once())["verified"] == [order["work_order_id"]]
    done = (await w.http.get(url, headers=w.auth())).json()
    assert done["state"] == "verified" and done["overdue"] is False
    assert [(h["action"], h["actor"]) for h in done["history"]] == [
        ("opened", "system"), ("assigned", "张工"), ("assigned", "张工"), ("fixed", "张工"), ("verified", "system")]
    assert await w.pool.fetchval("SELECT count(*) FROM work_order_devices") == 0
    assert (await w.http.patch(url, json={"state": "open"}, headers=w.auth())).status_code == 409


async def test_overdue_after_the_due_day_in_the_device_time_zone_tells_assignee_and_duty_officer(
    world: World,
) -> None:
    w = world
    await w.pool.execute(
        """INSERT INTO responders (responder_id, name, role, regions) VALUES
           ('wang', '王师傅', 'maintainer', '{}'), ('duty-zg', '章贡值班', 'duty_officer', $1),
           ('duty-jx', '江西值班', 'duty_officer', $2), ('duty-dh', '东湖值班', 'duty_officer', $3)""",
        [ZG], ["江西省"], [DH])
    r = await w.http.post("/api/v1/work-orders", json={"unit_id": "u-zg", "reason": "灭火器过期", "assignee": "wang",
                                                       "due": "2026-03-10"}, headers=w.auth())
    assert r.status_code == 201 and r.json()["state"] == "assigned"
    url = f"/api/v1/work-orders/{r.json()['work_order_id']}"
    w.clock.at = datetime(2026, 3, 10, 23, 50, tzinfo=TZ)
    assert (await w.sweep.once())["overdue"] == []
    assert (await w.http.get(url, headers=w.auth())).json()["overdue"] is False
    w.clock.at = datetime(2026, 3, 11, 0, 10, tzinfo=TZ)  # 16:10 UTC on the 10th: the due day has ended in Shanghai
    order = (await w.http.get(url, headers=w.auth())).json()
    assert order["overdue"] is True and order["overdue_at"] is None
    assert await w.pairs(overdue="true") == {("", "hidden_danger")} and await w.pairs(overdue="false") == set()
    assert (await w.sweep.once())["overdue"] == [order["work_order_id"]]
    assert (await w.sweep.once())["overdue"] == []  # told once
    order = (await w.http.get(url, headers=w.auth())).json()
    assert [(n["responder_id"], n["reason"]) for n in order["notices"]] == [
        ("wang", "assigned"), ("wang", "overdue"), ("duty-zg", "overdue")]  # the closest duty officer only
    assert order["history"][-1]["action"] == "overdue" and order["history"][-1]["detail"]["told"] == ["wang", "duty-zg"]
    r = await w.http.get("/api/v1/work-orders", params={"overdue": "true", "format": "csv"}, headers=w.auth())
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text.lstrip("\ufeff"))))
    assert [(x["reason"], x["overdue"], x["due"], x["state"]) for x in rows] == [
        ("灭火器过期", "True", "2026-03-10", "assigned")]
    await w.http.patch(url, json={"due": "2026-03-12"}, headers=w.auth())
    assert (await w.http.get(url, headers=w.auth())).json()["overdue"] is False
    w.clock.at = datetime(2026, 3, 13, 9, 0, tzinfo=TZ)  # past the new due day: told again
    assert (await w.sweep.once())["overdue"] == [order["work_order_id"]]
    notices = (await w.http.get(url, headers=w.auth())).json()["notices"]
    assert [(n["responder_id"], n["reason"]) for n in notices][3:] == [("wang", "overdue"), ("duty-zg", "overdue")]


async def test_scope_csv_and_cursors(world: World) -> None:
    w = world
    ids = []
    for unit, reason in (("u-zg", '=HYPERLINK("x")'), ("u-dh", "东湖隐患一"), ("u-dh", "东湖隐患二"),
                         ("u-zg", "章贡")):
        r = await w.http.post("/api/v1/work-orders", json={"unit_id": unit, "reason": reason}, headers=w.auth())
        ids.append(r.json()["work_order_id"])
    dh = w.auth(w.dh_viewer)
    seen = [o["reason"] for o in (await w.http.get("/api/v1/work-orders", headers=dh)).json()["items"]]
    assert seen == ["东湖隐患二", "东湖隐患一"]
    assert (await w.http.get(f"/api/v1/work-orders/{ids[0]}", headers=dh)).status_code == 403
    assert (await w.http.get(f"/api/v1/work-orders/{ids[1]}", headers=dh)).status_code == 200
    assert (await w.http.get("/api/v1/work-orders/999999", headers=dh)).status_code == 404
    assert (await w.http.patch(f"/api/v1/work-orders/{ids[1]}", json={"state": "cancelled"},
                               headers=dh)).status_code == 403  # a viewer changes nothing
    narrowed = await w.http.get("/api/v1/work-orders", params={"region": ZG}, headers=dh)
    assert narrowed.json()["items"] == []  # a filter never widens the token's scope
    text = (await w.http.get("/api/v1/work-orders", params={"format": "csv"}, headers=dh)).text
    assert "章贡" not in text and text.count("\n") == 3
    everything = (await w.http.get("/api/v1/work-orders", params={"format": "csv", "live": "true"},
                                   headers=w.auth())).text
    assert "'=HYPERLINK" in everything  # a spreadsheet does not run it
    page1 = (await w.http.get("/api/v1/work-orders", params={"limit": 3}, headers=w.auth())).json()
    assert [o["work_order_id"] for o in page1["items"]] == ids[::-1][:3]
    page2 = (await w.http.get("/api/v1/work-orders", params={"limit": 3, "cursor": page1["next_cursor"]},
                              headers=w.auth())).json()
    assert [o["work_order_id"] for o in page2["items"]] == [ids[0]] and page2["next_cursor"] is None
    for bad in ("x", "-1", "²", "99999999999999999999"):
        r = await w.http.get("/api/v1/work-orders", params={"cursor": bad}, headers=w.auth())
        assert r.status_code == 400, bad
    assert (await w.http.get("/api/v1/work-orders", params={"state": "nope"}, headers=w.auth())).status_code == 422


async def test_maintenance_until_bound_actor_and_end_by_itself(world: World) -> None:
    w = world
    url = "/api/v1/devices/d-ok/maintenance"
    too_far = (NOW + timedelta(days=7, minutes=1)).isoformat()
    for body in ({"on": True, "until": too_far}, {"on": True, "until": (NOW - timedelta(minutes=1)).isoformat()},
                 {"on": True, "until": "2026-03-11T12:00:00"}):
        r = await w.http.post(url, json=body, headers=w.auth())
        assert r.status_code == 422, (body, r.text)
    r = await w.http.post(url, json={"on": True}, headers=w.auth())  # v1's body: 24 h
    assert r.status_code == 200 and r.json()["maintenance"] is True
    assert datetime.fromisoformat(r.json()["until"]) == NOW + timedelta(hours=24) and r.json()["by"] == "张工"
    r = await w.http.post("/api/v1/units/u-dh/maintenance",
                          json={"on": True, "until": (NOW + timedelta(days=7)).isoformat(), "reason": "年检"},
                          headers=w.auth())
    assert r.status_code == 200 and r.json()["reason"] == "年检"
    device = (await w.http.get("/api/v1/devices/d-ok", headers=w.auth())).json()
    assert (device["maintenance_reason"], device["maintenance_by"], device["in_maintenance"]) == (None, "张工", True)
    assert (await w.http.get("/api/v1/devices/d-dh", headers=w.auth())).json()["in_maintenance"] is True

    w.clock.at = NOW + timedelta(hours=23, minutes=59)
    assert (await w.sweep.once())["maintenance_devices"] == []
    w.clock.at = NOW + timedelta(hours=24)
    assert (await w.sweep.once())["maintenance_devices"] == ["d-ok"]
    device = (await w.http.get("/api/v1/devices/d-ok", headers=w.auth())).json()
    assert device["in_maintenance"] is False and device["maintenance_until"] is None
    audit = await w.pool.fetch("SELECT action, actor, detail FROM device_audit WHERE device_id = 'd-ok' ORDER BY id")
    assert [(a["action"], a["actor"]) for a in audit] == [("maintenance_on", "张工"), ("maintenance_expired", "system")]
    assert json.loads(audit[1]["detail"])["set_by"] == "张工"

    w.clock.at = NOW + timedelta(days=7)
    assert (await w.sweep.once())["maintenance_units"] == ["u-dh"]
    assert (await w.http.get("/api/v1/devices/d-dh", headers=w.auth())).json()["in_maintenance"] is False
    unit_audit = await w.pool.fetch("SELECT action, actor FROM unit_audit WHERE unit_id = 'u-dh' ORDER BY id")
    assert [(a["action"], a["actor"]) for a in unit_audit] == [
        ("maintenance_on", "张工"), ("maintenance_expired", "system")]
    r = await w.http.post(url, json={"on": True, "until": (w.clock.at + timedelta(hours=2)).isoformat()},
                          headers=w.auth())
    assert r.status_code == 200
    r = await w.http.post(url, json={"on": False}, headers=w.auth())
    assert r.json() == {"device_id": "d-ok", "maintenance": False, "until": None, "reason": None, "by": "张工"}
    assert (await w.pool.fetchval("SELECT action FROM device_audit WHERE device_id = 'd-ok' ORDER BY id DESC LIMIT 1")
            == "maintenance_off")


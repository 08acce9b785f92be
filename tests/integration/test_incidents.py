"""Incidents on real PostgreSQL (CONTRACT §8 "Incidents (v2)"): a unit `fire` is the parent of its
unit's fire-class device alarms; children neither climb nor notify; ack/resolve of the parent
cascade; a resolved parent holds its detectors still in alarm until they clear; the routes show
`parent_id`/`children` and filter `top_level`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from alerting.api import router
from alerting.config import RuleConfig
from alerting.core import Correlator
from alerting.lifecycle import AlarmLifecycle
from alerting.metrics import AlarmMetrics
from alerting.model import AlarmType, Decision, Response, Severity
from alerting.service import AlarmService
from alerting.stream import AlarmHub, db_replay
from devices.batch import ReadingColumns
from devices.fleet import Fleet
from devices.kinds import Event, Kind
from devices.reading import Reading
from tests.clock import Clock
from tests.lifespan_state import with_services

pytestmark = pytest.mark.integration
T0 = 1_795_341_600_000
REGION = "江西省/赣州市/章贡区/南外街道"
ADMIN = "incident-admin-token"


def smoke(device: str, ts: int, action: str = "raise") -> Decision:
    event = "alarm" if action == "raise" else "alarm_clear"
    return Decision(action, f"device:{device}", AlarmType.smoke, Severity.major, Response.verify, "smoke_alarm", ts,
                    [device], "U1", [{"device_id": device, "ts_ms": ts, "event": event}])


def overheat(device: str, ts: int) -> Decision:
    return Decision("raise", f"device:{device}", AlarmType.cable_overheat, Severity.major, Response.verify,
                    "cable_overheat", ts, [device], "U1", [{"device_id": device, "ts_ms": ts}])


def fire(ts: int, *devices: str, electrical: tuple[str, ...] = ()) -> Decision:
    evidence = [{"device_id": d, "ts_ms": ts, "event": "alarm", "type": "smoke"} for d in devices]
    evidence += [{"device_id": d, "ts_ms": ts, "event": "alarm", "type": "cable_overheat"} for d in electrical]
    rule = "electrical_then_smoke" if electrical else "multi_detector"
    return Decision("raise", "unit:U1", AlarmType.fire, Severity.critical, Response.immediate, rule, ts,
                    [*devices, *electrical], "U1", evidence)


class World:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.clock = Clock(T0)
        fleet = Fleet()
        fleet.set_unit("U1", region=REGION)
        for i in range(1, 5):
            fleet.upsert(f"D{i}", Kind.smoke, unit_id="U1")
        fleet.upsert("E1", Kind.electrical, unit_id="U1")
        metrics = AlarmMetrics(CollectorRegistry())
        self.hub = AlarmHub(db_replay(pool), metrics=metrics)
        self.lifecycle = AlarmLifecycle(pool, self.hub, fleet, self.clock, metrics=metrics)
        self.service = AlarmService(pool, fleet, Correlator(RuleConfig()), self.lifecycle, self.hub, self.clock)

    async def handle(self, *decisions: Decision) -> None:
        for d in decisions:  # one at a time, as a batch of one reading each
            await self.lifecycle.handle([d])
        await self.lifecycle.flush(self.clock())

    async def alarm(self, key: str, *, status_open: bool = True) -> asyncpg.Record:
        where = "AND status IN ('active_unack', 'active_ack', 'cleared_unack')" if status_open else ""
        row = await self.pool.fetchrow(f"SELECT * FROM alarms WHERE alarm_key = $1 {where} ORDER BY alarm_id DESC",
                                       key)
        assert row is not None, key
        return row

    async def by_id(self, alarm_id: int) -> asyncpg.Record:
        return await self.pool.fetchrow("SELECT * FROM alarms WHERE alarm_id = $1", alarm_id)

    async def events(self, alarm_id: int) -> list[tuple[str, str, dict[str, Any]]]:
        rows = await self.pool.fetch(
            "SELECT action, actor, detail FROM alarm_events WHERE alarm_id = $1 ORDER BY event_id", alarm_id)
        return [(r["action"], r["actor"], _json(r["detail"])) for r in rows]

    async def notifications(self, alarm_id: int) -> list[str]:
        return [r["state"] for r in await self.pool.fetch(
            "SELECT state FROM notifications WHERE alarm_id = $1 ORDER BY id", alarm_id)]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


@pytest.fixture
async def world(pool: asyncpg.Pool) -> AsyncIterator[World]:
    await pool.execute("INSERT INTO units (unit_id, name, region) VALUES ('U1', '一号楼', $1)", REGION)
    await pool.execute(
        """INSERT INTO responders (responder_id, name, role) VALUES
           ('uc', '单位联系人', 'unit_contact'), ('gw', '网格员', 'grid_worker'),
           ('ms', '微型消防站', 'micro_station'), ('fb', '消防救援', 'fire_brigade')""")
    yield World(pool)


async def test_one_fire_one_incident(world: World) -> None:
    w = world
    await w.handle(smoke("D1", T0), smoke("D2", T0 + 1000), overheat("E1", T0 + 500))
    d1, d2 = await w.alarm("device:D1"), await w.alarm("device:D2")
    assert await w.notifications(d1["alarm_id"]) == ["queued"]  # a verify smoke tells its unit contact
    w.clock.now += 1000
    await w.handle(fire(T0 + 1000, "D1", "D2", electrical=("E1",)))
    parent = await w.alarm("unit:U1")
    pid = parent["alarm_id"]
    assert list(parent["children"]) == [d1["alarm_id"], d2["alarm_id"]]
    assert (await w.by_id(d1["alarm_id"]))["parent_id"] == pid
    assert (await w.by_id(d2["alarm_id"]))["parent_id"] == pid
    # the electrical alarm that made it is evidence, not a child
    assert "E1" in {e["device_id"] for e in _json(parent["evidence"])}
    assert (await w.alarm("device:E1"))["parent_id"] is None
    # the children's queued messages are not sent: people are told about the incident
    assert await w.notifications(d1["alarm_id"]) == ["skipped"]
    assert await w.notifications(d2["alarm_id"]) == ["skipped"]
    assert await w.notifications(pid) == ["queued", "queued"]  # immediate: unit contact and grid worker
    assert [a for a, _, _ in await w.events(d1["alarm_id"])] == ["raised", "linked"]

    # a third smoke while the fire is open joins it, sends nothing
    w.clock.now += 4000
    await w.handle(smoke("D3", T0 + 5000))
    d3 = await w.alarm("device:D3")
    assert d3["parent_id"] == pid
    assert await w.notifications(d3["alarm_id"]) == []
    parent = await w.by_id(pid)
    assert list(parent["children"]) == [d1["alarm_id"], d2["alarm_id"], d3["alarm_id"]]
    assert (await w.events(pid))[-1][0] == "child_added"

    # the published objects carry the links
    published = {e.data["alarm_id"]: e.data for e in w.hub.recent}
    assert published[str(d3["alarm_id"])]["parent_id"] == str(pid)
    assert published[str(pid)]["children"] == [str(d1["alarm_id"]), str(d2["alarm_id"]), str(d3["alarm_id"])]

    # time passes unacknowledged: the parent climbs, children neither climb nor upgrade
    for _ in range(4):
        w.clock.now += 61_000
        await w.lifecycle.tick(w.clock())
    parent = await w.by_id(pid)
    assert parent["escalation_level"] == 3
    for child in (d1, d2, d3):
        row = await w.by_id(child["alarm_id"])
        assert (row["response"], row["escalation_level"]) == ("verify", 0)
    assert await w.notifications(d3["alarm_id"]) == []

    # a repeat of a child (stronger response) does not upgrade it either
    await w.handle(Decision("raise", "device:D1", AlarmType.smoke, Severity.critical, Response.immediate,
                            "smoke_heat", T0 + 6000, ["D1"], "U1", [{"device_id": "D1", "ts_ms": T0 + 6000}]))
    row = await w.by_id(d1["alarm_id"])
    assert (row["response"], row["severity"], row["count"]) == ("verify", "major", 2)
    assert await w.notifications(d1["alarm_id"]) == ["skipped"]

    # acknowledging the parent acknowledges its open children, with its actor
    await w.lifecycle.acknowledge(pid, "值班员甲")
    for child in (d1, d2, d3):
        row = await w.by_id(child["alarm_id"])
        assert (row["status"], row["acked_by"]) == ("active_ack", "值班员甲")
        action, actor, detail = (await w.events(child["alarm_id"]))[-1]
        assert (action, actor, detail["parent_id"]) == ("acked", "值班员甲", str(pid))

    # acting on a child changes only the child
    await w.lifecycle.resolve(d3["alarm_id"], "false_alarm", "误报", "值班员乙")
    assert (await w.by_id(pid))["status"] == "active_ack"
    assert (await w.by_id(d1["alarm_id"]))["status"] == "active_ack"

    # D2's detector clears before the resolution; D1 is still in alarm
    await w.handle(smoke("D2", T0 + 9000, "clear"))
    assert (await w.by_id(d2["alarm_id"]))["status"] == "cleared_ack"

    # resolving the parent resolves its open children with its classification, note and actor
    await w.lifecycle.resolve(pid, "fire", "厨房起火，已扑灭", "值班员丙")
    row = await w.by_id(d1["alarm_id"])
    assert (row["status"], row["classification"], row["note"], row["resolved_by"]) == (
        "resolved", "fire", "厨房起火，已扑灭", "值班员丙")
    action, actor, detail = (await w.events(d1["alarm_id"]))[-1]
    assert (action, actor, detail["parent_id"]) == ("resolved", "值班员丙", str(pid))
    assert (await w.by_id(d2["alarm_id"]))["status"] == "cleared_ack"  # closed already: left as it is
    assert (await w.by_id(d3["alarm_id"]))["classification"] == "false_alarm"
    parent = await w.by_id(pid)
    assert list(parent["held_devices"]) == ["D1"]

    # the still-alarming detector repeats: recorded on the parent, nothing raised, no new fire
    count = await w.pool.fetchval("SELECT count(*) FROM alarms")
    w.clock.now += 3000
    await w.handle(smoke("D1", T0 + 12_000), fire(T0 + 12_000, "D1", "D2"))
    assert await w.pool.fetchval("SELECT count(*) FROM alarms") == count
    held = [(a, d) for a, _, d in await w.events(pid) if a == "held_report"]
    assert [(d["alarm_key"], d["type"]) for _, d in held] == [("device:D1", "smoke"), ("unit:U1", "fire")]

    # the detector clears: the hold ends (on the parent's timeline) ...
    await w.handle(smoke("D1", T0 + 20_000, "clear"))
    assert list((await w.by_id(pid))["held_devices"]) == []
    action, _, detail = (await w.events(pid))[-1]
    assert (action, detail["device_id"]) == ("hold_released", "D1")
    # ... and its next alarm raises normally, standing alone (no open fire), telling people again
    w.clock.now += 20_000
    await w.handle(smoke("D1", T0 + 40_000))
    again = await w.alarm("device:D1")
    assert again["alarm_id"] not in (d1["alarm_id"],) and again["parent_id"] is None
    assert again["status"] == "active_unack"
    assert await w.notifications(again["alarm_id"]) == ["queued"]


async def test_new_detector_after_resolution_makes_a_new_fire(world: World) -> None:
    """A held detector does not swallow a new fire: one with a detector whose alarm is open is raised."""
    w = world
    await w.handle(smoke("D1", T0), smoke("D2", T0 + 500), fire(T0 + 500, "D1", "D2"))
    first = await w.alarm("unit:U1")
    await w.lifecycle.resolve(first["alarm_id"], "fire", None, "op")
    assert sorted((await w.by_id(first["alarm_id"]))["held_devices"]) == ["D1", "D2"]
    w.clock.now += 5000
    await w.handle(smoke("D4", T0 + 5000), fire(T0 + 5000, "D1", "D4"))
    second = await w.alarm("unit:U1")
    assert second["alarm_id"] != first["alarm_id"]
    d4 = await w.alarm("device:D4")
    assert list(second["children"]) == [d4["alarm_id"]] and d4["parent_id"] == second["alarm_id"]
    # the held detector's repeat still goes to the first incident, which holds it
    await w.handle(smoke("D2", T0 + 6000))
    assert (await w.events(first["alarm_id"]))[-1][0] == "held_report"


async def test_routes_show_links_and_filter_top_level(world: World) -> None:
    w = world
    await w.handle(smoke("D1", T0), smoke("D2", T0 + 500), fire(T0 + 500, "D1", "D2"))
    await w.handle(overheat("E1", T0 + 600))
    parent = await w.alarm("unit:U1")
    app = FastAPI()
    app.include_router(router)
    services = SimpleNamespace(admin_token=SecretStr(ADMIN), pool=w.pool, alarms=w.service)
    transport = httpx.ASGITransport(app=with_services(app, services))
    async with httpx.AsyncClient(transport=transport, base_url="http://t",
                                 headers={"Authorization": f"Bearer {ADMIN}"}) as http:
        everything = (await http.get("/api/v1/alarms")).json()["items"]
        top = (await http.get("/api/v1/alarms", params={"top_level": "true"})).json()["items"]
        assert len(everything) == 4
        assert sorted(a["type"] for a in top) == ["cable_overheat", "fire"]
        shown = next(a for a in top if a["type"] == "fire")
        children = [a["alarm_id"] for a in everything if a["parent_id"] == str(parent["alarm_id"])]
        assert shown["parent_id"] is None and sorted(shown["children"]) == sorted(children) and len(children) == 2
        child = (await http.get(f"/api/v1/alarms/{children[0]}")).json()
        assert child["parent_id"] == str(parent["alarm_id"]) and child["children"] == []
        assert [e["action"] for e in child["timeline"]] == ["raised", "linked", "notification_skipped"]
        acked = await http.post(f"/api/v1/alarms/{shown['alarm_id']}/ack")
        assert acked.status_code == 200
        child = (await http.get(f"/api/v1/alarms/{children[0]}")).json()
        acks = [e for e in child["timeline"] if e["action"] == "acked"]
        assert child["status"] == "active_ack" and [(e["actor"], e["detail"]["parent_id"]) for e in acks] == [
            ("admin", shown["alarm_id"])]
        assert (await http.get("/api/v1/alarms", params={"top_level": "maybe"})).status_code == 422


async def test_the_correlators_fire_and_its_repeats_after_resolution(pool: asyncpg.Pool) -> None:
    """Real readings through the correlation core: two smoke detectors make one incident; after it is
    resolved their repeats (and the fire they make again) raise nothing until a detector clears."""
    clock = Clock(T0 + 200)
    fleet = Fleet()
    fleet.set_unit("U1", region=REGION)
    for d in ("S1", "S2"):
        fleet.upsert(d, Kind.smoke, unit_id="U1")
    service = AlarmService.create(pool=pool, fleet=fleet, correlator=Correlator(), clock=clock,
                                  registry=CollectorRegistry())

    async def feed(device: str, event: Event, ts: int) -> None:
        clock.now = ts + 200
        r = Reading(device, Kind.smoke, event, ts, ts + 150, seq=ts // 1000, metrics={})
        columns = ReadingColumns.from_readings([r], fleet.slots([device]))
        decisions = service.correlator.evaluate(columns, fleet, clock())
        fleet.apply(columns)
        await service.lifecycle.handle(decisions)
        await service.lifecycle.flush(clock())

    async def count() -> int:
        return await pool.fetchval("SELECT count(*) FROM alarms")

    await feed("S1", Event.alarm, T0)
    await feed("S2", Event.alarm, T0 + 1000)
    rows = {(r["alarm_key"], r["type"]): r for r in await pool.fetch("SELECT * FROM alarms")}
    parent = rows[("unit:U1", "fire")]
    assert sorted(parent["children"]) == sorted(rows[(f"device:{d}", "smoke")]["alarm_id"] for d in ("S1", "S2"))
    await service.lifecycle.resolve(parent["alarm_id"], "fire", None, "值班员")
    before = await count()
    await feed("S1", Event.alarm, T0 + 20_000)
    await feed("S2", Event.alarm, T0 + 21_000)
    assert await count() == before
    held = await pool.fetch("SELECT detail FROM alarm_events WHERE alarm_id = $1 AND action = 'held_report'",
                            parent["alarm_id"])
    assert {_json(r["detail"])["alarm_key"] for r in held} >= {"device:S1", "device:S2"}
    await feed("S1", Event.alarm_clear, T0 + 40_000)
    assert list(await pool.fetchval("SELECT held_devices FROM alarms WHERE alarm_id = $1", parent["alarm_id"])) == [
        "S2"]
    await feed("S1", Event.alarm, T0 + 50_000)
    # S1 alarms anew and is raised as usual; with S2 still in alarm that is two detectors within
    # 120 s: a new fire (safety first), adopting S1's new alarm; S2 stays held by the first one
    assert await count() == before + 2
    newest = "SELECT * FROM alarms WHERE alarm_key = $1 ORDER BY alarm_id DESC LIMIT 1"
    s1, fire = await pool.fetchrow(newest, "device:S1"), await pool.fetchrow(newest, "unit:U1")
    assert fire["alarm_id"] != parent["alarm_id"] and list(fire["children"]) == [s1["alarm_id"]]
    assert (s1["parent_id"], s1["status"]) == (fire["alarm_id"], "active_unack")

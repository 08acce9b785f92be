"""Risk API on real PostgreSQL with a synthetic history whose colours, trend warnings and report
figures are known in advance (the wall clock is fixed; docs/risk.md has the weights)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from alerting.risk_api import router
from alerting.risk_report import COLUMNS, TITLES
from alerting.risk_service import RiskService
from devices.auth import create_token
from devices.fleet import FAULT, OFFLINE, ONLINE, Fleet
from devices.kinds import Kind
from miaoxiang.migrate import migrate
from miaoxiang.settings import DEFAULT_MIGRATIONS_DIR, Settings
from tests.lifespan_state import with_services
from tests.service import running_service

pytestmark = pytest.mark.integration
NOW = datetime(2025, 6, 11, 12, 0, tzinfo=UTC)  # a Wednesday; its week starts on Monday 2025-06-09
ZG = "江西省/赣州市/章贡区/南外街道"
DH = "江西省/南昌市/东湖区/公园街道"
UNITS = {  # unit: (region, industry, smoke detectors registered)
    "u-green": (ZG, "residential", 4),
    "u-red": (ZG, "residential", 4),
    "u-yellow": (ZG, "market", 4),
    "u-nodet": (DH, "residential", 1),
    "u-orange": (DH, "religion", 4),
}
_keys = iter(range(10**6))


async def alarm(conn: asyncpg.Connection, unit: str, *, type_: str = "smoke", severity: str = "major",
                response: str = "verify", status: str = "resolved", classification: str | None = None,
                age: timedelta = timedelta(0), devices: list[str] | None = None) -> int:
    """One alarm and its audit event, as the lifecycle writes them."""
    t = NOW - age
    cleared = t + timedelta(hours=1) if status in ("resolved", "cleared_ack") else None
    alarm_id = await conn.fetchval(
        """INSERT INTO alarms (alarm_key, type, severity, response, status, unit_id, region, first_seen, last_seen,
                               rule, classification, device_ids, cleared_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, 'test', $9, $10, $11) RETURNING alarm_id""",
        f"device:k{next(_keys)}",
        type_,
        severity,
        response,
        status,
        unit,
        UNITS[unit][0],
        t,
        classification,
        devices or [],
        cleared,
    )
    await event(conn, alarm_id, "raised")
    return alarm_id


async def event(conn: asyncpg.Connection, alarm_id: int, action: str) -> None:
    await conn.execute("INSERT INTO alarm_events (alarm_id, action, snapshot) VALUES ($1, $2, $3)", alarm_id, action,
                       json.dumps({"alarm_id": alarm_id}))


async def seed(conn: asyncpg.Connection) -> dict[str, int]:
    for u, (region, industry, n) in UNITS.items():
        await conn.execute(
            "INSERT INTO units (unit_id, name, region, industry) VALUES ($1, $1, $2, $3)", u, region, industry
        )
        for i in range(n):
            await conn.execute(
                "INSERT INTO devices (device_id, kind, unit_id, created_at) VALUES ($1, 'smoke', $2, $3)",
                f"{u}-d{i}",
                u,
                datetime(2025, 1, 1, tzinfo=UTC),
            )
    ids = {
        "fire": await alarm(
            conn, "u-red", type_="fire", severity="critical", response="immediate", status="active_unack"
        )
    }
    # religion venues (东湖区): one false alarm a week for twelve weeks, then twelve this week and an open major alarm
    ids["major"] = await alarm(conn, "u-orange", status="active_unack")
    for w in range(12):
        await alarm(conn, "u-orange", classification="false_alarm", age=timedelta(weeks=w + 1, hours=1))
    for i in range(12):
        await alarm(conn, "u-orange", classification="false_alarm", age=timedelta(hours=i + 1))
    # a market with 8 false alarms five weeks ago: yellow (16), and no trend this week
    for i in range(8):
        await alarm(conn, "u-yellow", classification="false_alarm", age=timedelta(weeks=5, hours=i))
    # left out of trends and alarm counts: tests, and device-health alarms (offline)
    for i in range(5):
        await alarm(conn, "u-green", classification="test", age=timedelta(hours=i + 1))
    for i in range(6):
        await alarm(conn, "u-nodet", type_="offline", severity="minor", age=timedelta(days=2, hours=i),
                    devices=["u-nodet-d0"])
    return ids


def fleet_of_units() -> Fleet:
    fleet = Fleet()
    for u, (_, _, n) in UNITS.items():
        for i in range(n):
            fleet.flags[fleet.upsert(f"{u}-d{i}", Kind.smoke, unit_id=u)] = ONLINE
    fleet.flags[fleet.slot("u-nodet-d0")] = OFFLINE | FAULT
    return fleet


@dataclass
class World:
    http: httpx.AsyncClient
    pool: asyncpg.Pool
    risk: RiskService
    fleet: Fleet
    ids: dict[str, int]
    dh_viewer: str


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=3)
    async with pool.acquire() as conn:
        await migrate(conn, DEFAULT_MIGRATIONS_DIR)
        ids = await seed(conn)
    fleet = fleet_of_units()
    risk = RiskService(pool, fleet, ttl_s=3600, wall=lambda: NOW)
    app = FastAPI()
    app.include_router(router)
    services = SimpleNamespace(pool=pool, admin_token=SecretStr("tok"), risk=risk)
    viewer = await create_token(pool, "dh", "viewer", ["江西省/南昌市/东湖区"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(with_services(app, services)), base_url="http://t",
                                 headers={"Authorization": "Bearer tok"}) as c:
        yield World(c, pool, risk, fleet, ids, viewer)
    await pool.close()


async def colours(w: World, **params: str) -> dict[str, str]:
    r = await w.http.get("/api/v1/risk/units", params=params)
    assert r.status_code == 200, r.text
    return {i["unit_id"]: i["colour"] for i in r.json()["items"]}


async def test_colours_follow_the_documented_score(world: World) -> None:
    items = {i["unit_id"]: i for i in (await world.http.get("/api/v1/risk/units")).json()["items"]}
    # u-orange: open major (20) + 24 false alarms in 90 d (48, capped 30) = 50; u-nodet: offline and faulty (40) +
    # no working detector (40) = 80; u-red: an open 秒响应 fire; u-yellow: 8 false alarms = 16
    assert {u: (i["colour"], i["score"]) for u, i in items.items()} == {
        "u-green": ("green", 0.0), "u-red": ("red", 40.0), "u-yellow": ("yellow", 16.0), "u-nodet": ("red", 80.0),
        "u-orange": ("orange", 50.0)}
    assert await colours(world, colour="red", region="江西省/南昌市") == {"u-nodet": "red"}
    assert await colours(world, region="江西省/南昌") == {}  # whole path segments only
    page = (await world.http.get("/api/v1/risk/units", params={"limit": 2})).json()
    assert [i["unit_id"] for i in page["items"]] == ["u-green", "u-nodet"] and page["next_cursor"] == "u-nodet"
    nxt = (await world.http.get("/api/v1/risk/units", params={"limit": 2, "cursor": "u-nodet"})).json()
    assert [i["unit_id"] for i in nxt["items"]] == ["u-orange", "u-red"]


async def test_one_unit_explains_its_score(world: World) -> None:
    r = (await world.http.get("/api/v1/risk/units/u-orange")).json()
    assert r["parts"] == {"alarms": 20.0, "history": 30.0, "health": 0.0, "coverage": 0.0, "upkeep": 0.0}
    assert r["inputs"]["active_by_severity"]["major"] == 1 and r["inputs"]["false_alarms_90d"] == 24
    assert r["inputs"]["working"] == 4
    assert (await world.http.get("/api/v1/risk/units/nope")).status_code == 404


async def test_aggregates_by_region_and_industry(world: World) -> None:
    agg = (await world.http.get("/api/v1/risk/aggregates", params={"by": "region", "depth": 2})).json()["items"]
    assert {a["group"]: (a["units"], a["red"], a["orange"], a["yellow"], a["green"]) for a in agg} == {
        "江西省/南昌市": (2, 1, 1, 0, 0), "江西省/赣州市": (3, 1, 0, 1, 1)}
    by_industry = (await world.http.get("/api/v1/risk/aggregates", params={"by": "industry"})).json()["items"]
    assert {a["group"]: (a["units"], a["mean_score"], a["max_score"]) for a in by_industry} == {
        "market": (1, 16.0, 16.0), "religion": (1, 50.0, 50.0), "residential": (3, 40.0, 80.0)}


async def test_trend_warnings_name_the_jump_and_say_why(world: World) -> None:
    by_industry = (await world.http.get("/api/v1/risk/trends", params={"by": "industry"})).json()["items"]
    assert [(t["group"], t["count"], t["baseline"], t["severity"]) for t in by_industry] == [
        ("religion", 13, 1.0, "warning")
    ]
    assert "13 alarms in the last 7 days against a baseline of 1.0/week" in by_industry[0]["why"]
    # residential has 1 fire, 5 tests and 6 offline alarms this week: tests and device health do not count
    for depth, group in ((3, "江西省/南昌市/东湖区"), (2, "江西省/南昌市"), (4, DH)):
        trends = (await world.http.get("/api/v1/risk/trends", params={"depth": depth})).json()["items"]
        assert [t["group"] for t in trends] == [group], depth
    ganzhou = (await world.http.get("/api/v1/risk/trends", params={"region": "江西省/赣州市"})).json()["items"]
    assert ganzhou == []


async def test_region_report_csv_and_html(world: World) -> None:
    r = await world.http.get("/api/v1/risk/report", params={"region": "江西省/南昌市"})
    assert r.headers["content-type"].startswith("text/csv") and "attachment" in r.headers["content-disposition"]
    note, table = r.text.split("\n", 1)
    assert "Asia/Shanghai" in note and "fewer than the board" in note
    rows = [{c: row[TITLES[c]] for c in COLUMNS} for row in csv.DictReader(io.StringIO(table))]
    assert len(rows) == 13 and rows[-1]["week"] == "2025-06-09" and rows[0]["week"] == "2025-03-17"
    # this week: 12 false alarms and the open major alarm; one of five devices had an offline alarm open
    assert {k: rows[-1][k] for k in ("alarms", "false_alarms", "classified", "false_alarm_rate", "offline_devices",
                                     "devices", "offline_share")} == {
        "alarms": "13", "false_alarms": "12", "classified": "12", "false_alarm_rate": "1.0", "offline_devices": "1",
        "devices": "5", "offline_share": "0.2"}
    # the twelve weeks before: one false alarm each, nobody offline
    assert {(row["alarms"], row["false_alarm_rate"], row["offline_share"]) for row in rows[:-1]} == {
        ("1", "1.0", "0.0")
    }
    html = await world.http.get("/api/v1/risk/report", params={"region": "江西省/南昌市", "format": "html"})
    assert html.headers["content-type"].startswith("text/html") and html.text.count("<svg") == 3
    assert "江西省/南昌市" in html.text and "2025-06-09" in html.text


async def test_a_region_scoped_token_sees_only_its_region(world: World) -> None:
    auth = {"Authorization": f"Bearer {world.dh_viewer}"}
    units = (await world.http.get("/api/v1/risk/units", headers=auth)).json()["items"]
    assert {u["unit_id"] for u in units} == {"u-nodet", "u-orange"}
    assert (await world.http.get("/api/v1/risk/units/u-red", headers=auth)).status_code == 403
    assert (await world.http.get("/api/v1/risk/report", params={"region": ZG}, headers=auth)).status_code == 403
    assert (await world.http.get("/api/v1/risk/report", headers=auth)).status_code == 403  # all regions
    assert (await world.http.get("/api/v1/risk/trends", params={"region": ZG}, headers=auth)).status_code == 403
    agg = (await world.http.get("/api/v1/risk/aggregates", params={"depth": 1}, headers=auth)).json()["items"]
    assert [(a["group"], a["units"]) for a in agg] == [("江西省", 2)]
    industry = (await world.http.get("/api/v1/risk/trends", params={"by": "industry"}, headers=auth)).json()["items"]
    assert [t["group"] for t in industry] == ["religion"]
    assert (await world.http.get("/api/v1/risk/units", headers={"Authorization": ""})).status_code == 401


async def test_refreshes_are_incremental_and_end_where_a_full_pass_ends(world: World) -> None:
    assert (await colours(world))["u-red"] == "red"
    assert world.risk.last is not None and world.risk.last.full and world.risk.last.reread == 5
    async with world.pool.acquire() as conn:  # the fire is put out and confirmed as a real fire
        await conn.execute("UPDATE alarms SET status = 'resolved', classification = 'fire' WHERE alarm_id = $1",
                           world.ids["fire"])
        await event(conn, world.ids["fire"], "resolved")
        await conn.execute("INSERT INTO units (unit_id, name, region) VALUES ('u-new', 'n', $1)", ZG)
    step = await world.risk.refresh()
    assert (step.full, step.reread, step.changed) == (False, 2, 2)  # u-red's alarms; u-new is new
    got = await colours(world)
    assert (got["u-red"], got["u-new"]) == ("yellow", "orange")  # one fire in 90 d (15); no detector (40)
    world.fleet.flags[world.fleet.slot("u-green-d0")] = OFFLINE  # device health comes from the fleet
    world.fleet.flags[world.fleet.slot("u-green-d1")] = OFFLINE
    step = await world.risk.refresh()
    assert (step.reread, step.changed) == (0, 0)
    assert (await world.http.get("/api/v1/risk/units/u-green")).json()["score"] == 12.5
    fresh = RiskService(world.pool, world.fleet, wall=lambda: NOW)
    a, b = await world.risk.table(), await fresh.table()
    assert a.unit_ids == b.unit_ids and (a.scores.score == b.scores.score).all()
    assert (a.scores.colour == b.scores.colour).all()


async def test_units_api_of_the_service_carries_the_colour(settings: Settings) -> None:
    async with running_service(settings) as svc:
        unit = {"unit_id": "U-empty", "name": "空单位", "region": ZG}
        created = await svc.http.post("/api/v1/units", json=unit, headers=svc.auth())
        assert created.status_code == 201
        assert created.json()["risk_colour"] == "orange"  # no working detector: 40
        listed = (await svc.http.get("/api/v1/units", headers=svc.auth())).json()["items"]
        assert [(u["unit_id"], u["risk_colour"]) for u in listed] == [("U-empty", "orange")]
        risk = (await svc.http.get("/api/v1/risk/units/U-empty", headers=svc.auth())).json()
        assert risk["parts"]["coverage"] == 40.0

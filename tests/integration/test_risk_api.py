"""Risk API on real PostgreSQL with synthetic histories whose colours and trends are known."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from alerting.risk_api import router
from alerting.risk_service import RiskService
from devices.fleet import FAULT, OFFLINE, ONLINE, Fleet
from devices.kinds import Kind
from miaoxiang.migrate import migrate
from miaoxiang.settings import DEFAULT_MIGRATIONS_DIR, Settings

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC)


async def alarm(conn: asyncpg.Connection, unit: str, region: str, *, type_: str = "smoke", severity: str = "major",
                response: str = "verify", status: str = "resolved", classification: str | None = None,
                age: timedelta = timedelta(0), key: str | None = None) -> None:
    t = NOW - age
    await conn.execute(
        """INSERT INTO alarms (alarm_key, type, severity, response, status, unit_id, region, first_seen, last_seen, rule,
                               classification) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, 'test', $9)""",
        key or f"device:{unit}-{t.timestamp()}", type_, severity, response, status, unit, region, t, classification,
    )


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=3)
    async with pool.acquire() as conn:
        await migrate(conn, DEFAULT_MIGRATIONS_DIR)
        units = {"u-green": "江西省/赣州市/章贡区/南外街道", "u-red": "江西省/赣州市/章贡区/南外街道",
                 "u-nodet": "江西省/南昌市/东湖区/公园街道", "u-orange": "江西省/南昌市/东湖区/公园街道"}
        for u, region in units.items():
            await conn.execute("INSERT INTO units (unit_id, name, region, industry) VALUES ($1, $1, $2, $3)", u, region,
                               "religion" if u == "u-orange" else "residential")
        await alarm(conn, "u-red", units["u-red"], type_="fire", severity="critical", response="immediate", status="active_unack")
        await alarm(conn, "u-orange", units["u-orange"], severity="major", status="active_unack", key="a")
        for w in range(12):  # a quiet baseline for religion venues, then a jump this week
            await alarm(conn, "u-orange", units["u-orange"], classification="false_alarm", age=timedelta(weeks=w + 1, hours=1))
        for i in range(12):
            await alarm(conn, "u-orange", units["u-orange"], classification="false_alarm", age=timedelta(hours=i + 1))
    fleet = Fleet()
    for u in ("u-green", "u-red", "u-orange"):
        for i in range(4):
            s = fleet.upsert(f"{u}-d{i}", Kind.smoke, unit_id=u)
            fleet.flags[s] = ONLINE
    fleet.upsert("u-nodet-d0", Kind.smoke, unit_id="u-nodet")
    fleet.flags[fleet.slot("u-nodet-d0")] = OFFLINE | FAULT
    app = FastAPI()
    app.include_router(router)
    app.state.pool = pool
    app.state.settings = Settings(admin_token="tok")
    app.state.risk = RiskService(pool, fleet, ttl_s=0)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t",
                                 headers={"Authorization": "Bearer tok"}) as c:
        yield c
    await pool.close()


async def test_colours_follow_the_documented_score(client: httpx.AsyncClient) -> None:
    items = (await client.get("/api/v1/risk/units")).json()["items"]
    colours = {i["unit_id"]: i["colour"] for i in items}
    # u-orange: one major active (20) + 24 false alarms in 90 d (capped 30) = 50 -> orange
    assert colours == {"u-green": "green", "u-red": "red", "u-nodet": "red", "u-orange": "orange"}
    reds = (await client.get("/api/v1/risk/units", params={"colour": "red", "region": "江西省/南昌市"})).json()["items"]
    assert [r["unit_id"] for r in reds] == ["u-nodet"]


async def test_aggregates_and_trend_warning_name_the_jump(client: httpx.AsyncClient) -> None:
    agg = (await client.get("/api/v1/risk/aggregates", params={"by": "region", "depth": 2})).json()["items"]
    assert {a["group"]: (a["units"], a["red"]) for a in agg} == {"江西省/南昌市": (2, 1), "江西省/赣州市": (2, 1)}
    trends = (await client.get("/api/v1/risk/trends", params={"by": "industry"})).json()["items"]
    assert [t["group"] for t in trends] == ["religion"]
    assert trends[0]["severity"] == "warning" and trends[0]["count"] == 13


async def test_region_report_csv_and_html(client: httpx.AsyncClient) -> None:
    csv_text = (await client.get("/api/v1/risk/report", params={"region": "江西省/南昌市"})).text
    lines = csv_text.strip().splitlines()
    assert lines[0] == "week,alarms,false_alarm_rate,offline_share"
    assert len(lines) >= 13
    html = await client.get("/api/v1/risk/report", params={"region": "江西省/南昌市", "format": "html"})
    assert html.headers["content-type"].startswith("text/html") and "<svg" in html.text


async def test_needs_a_token(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/risk/units", headers={"Authorization": ""})
    assert r.status_code == 401

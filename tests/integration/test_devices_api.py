"""The devices router on a small app with the real PostgreSQL pool, fleet and broker client:
roles per route, registration, import, pagination, filters, region scoping, admin routes."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import aiomqtt
import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from alerting.overview_api import router as overview_router
from devices import fleet_query
from devices.api import router
from devices.auth import create_token
from devices.batch import ReadingColumns
from devices.commands import CommandService
from devices.fleet import Fleet
from devices.kinds import Event, Kind
from devices.outbound import OutboundPolicy
from devices.reading import Reading
from devices.service import DeviceService
from ingest.readings_api import router as readings_router
from miaoxiang.migrate import migrate
from miaoxiang.settings import DEFAULT_MIGRATIONS_DIR, Settings
from tests.lifespan_state import with_services

pytestmark = pytest.mark.integration
T0 = 1_795_341_600_000
ZHANGGONG = "江西省/赣州市/章贡区"
NANKANG = "江西省/赣州市/南康区"


class ManualClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


@dataclass
class Api:
    http: httpx.AsyncClient
    pool: asyncpg.Pool
    fleet: Fleet
    clock: ManualClock
    tokens: dict[str, str]

    def auth(self, who: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@pytest.fixture
async def api(settings: Settings, mqtt_url: str) -> AsyncIterator[Api]:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=4)
    async with pool.acquire() as conn:
        await migrate(conn, DEFAULT_MIGRATIONS_DIR)
    host, port = mqtt_url.removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(host, int(port)) as mqtt:

        async def publish(topic: str, payload: bytes) -> None:
            await mqtt.publish(topic, payload, qos=1)

        fleet = Fleet()
        clock = ManualClock()
        commands = CommandService(pool, fleet, publish, topic_root=settings.topic(), clock=clock)
        app = FastAPI()
        for r in (router, readings_router, overview_router):
            app.include_router(r)
        services = SimpleNamespace(
            admin_token=settings.admin_token, pool=pool, fleet=fleet, risk=None,
            devices=DeviceService(pool, fleet, commands, clock=clock),
            outbound=OutboundPolicy.parse(settings.outbound_allow), subscriptions=None,  # runs no consumers
            command_guard=None,  # no linkage here (tests/integration/test_linkage_e2e.py)
        )
        tokens = {
            "admin": "test-admin-token",
            "operator": await create_token(pool, "op", "operator", []),
            "viewer": await create_token(pool, "view", "viewer", []),
            "zhanggong_viewer": await create_token(pool, "zg-view", "viewer", [ZHANGGONG]),
            "zhanggong_operator": await create_token(pool, "zg-op", "operator", [ZHANGGONG]),
        }
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=with_services(app, services)), base_url="http://test"
        ) as http:
            yield Api(http, pool, fleet, clock, tokens)
    await pool.close()


async def seed(api: Api) -> None:
    """Two units in two districts, one without region; eight devices."""
    for unit_id, region in (("U-zg", f"{ZHANGGONG}/南外街道"), ("U-nk", NANKANG), ("U-none", "")):
        r = await api.http.post("/api/v1/units", json={"unit_id": unit_id, "name": unit_id, "region": region},
                                headers=api.auth("operator"))
        assert r.status_code == 201, r.text
    body = "\n".join(
        ["device_id,kind,unit_id"]
        + [f"zg-smoke-{i},smoke,U-zg" for i in range(3)]
        + ["zg-gas-0,gas,U-zg", "nk-smoke-0,smoke,U-nk", "nk-elec-0,electrical,U-nk", "none-water-0,water,U-none",
           "loose-gas-0,gas,"]
    )
    r = await api.http.post(
        "/api/v1/devices/import", content=body, headers={**api.auth("operator"), "content-type": "text/csv"}
    )
    assert r.json()["created"] == 8


def apply(api: Api, *rows: tuple[str, Kind, Event], received: int = T0) -> None:
    rs = [Reading(d, k, e, received, received, None, {"battery_pct": 77.0}) for d, k, e in rows]
    api.fleet.apply(ReadingColumns.from_readings(rs, api.fleet.slots([r.device_id for r in rs])))


# --- authentication and roles -------------------------------------------------------------------
CMD = str(uuid.uuid4())
ROUTES: list[tuple[str, str, str, dict | None]] = [
    ("POST", "/api/v1/devices", "operator", {"device_id": "x1", "kind": "smoke"}),
    ("POST", "/api/v1/devices/import", "operator", None),
    ("GET", "/api/v1/devices", "viewer", None),
    ("GET", "/api/v1/devices/zg-gas-0", "viewer", None),
    ("GET", "/api/v1/devices/zg-gas-0/readings", "viewer", None),
    ("POST", "/api/v1/devices/zg-gas-0/maintenance", "operator", {"on": True}),
    ("POST", "/api/v1/devices/zg-gas-0/commands", "operator", {"cmd": "valve_close"}),
    ("GET", "/api/v1/devices/zg-gas-0/commands", "viewer", None),
    ("GET", f"/api/v1/commands/{CMD}", "viewer", None),
    ("POST", "/api/v1/units", "operator", {"name": "x"}),
    ("GET", "/api/v1/units", "viewer", None),
    ("GET", "/api/v1/units/U-zg", "viewer", None),
    ("POST", "/api/v1/units/U-zg/maintenance", "operator", {"on": False}),
    ("POST", "/api/v1/push-sources", "admin", {"name": "ctw", "platform": "ctwing", "token": "t"}),
    ("GET", "/api/v1/push-sources", "admin", None),
    ("GET", "/api/v1/dead-letters", "admin", None),
    ("GET", "/api/v1/stats/overview", "viewer", None),
    ("POST", "/api/v1/tokens", "admin", {"name": "n", "role": "viewer"}),
]
WEAKER = {"viewer": [], "operator": ["viewer"], "admin": ["viewer", "operator"]}


@pytest.mark.parametrize(("method", "path", "role", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
async def test_every_route_needs_a_token_and_its_role(
    api: Api, method: str, path: str, role: str, body: dict | None
) -> None:
    await seed(api)
    assert (await api.http.request(method, path, json=body)).status_code == 401
    bad = await api.http.request(method, path, json=body, headers={"Authorization": "Bearer mx_nope"})
    assert bad.status_code == 401
    for weaker in WEAKER[role]:
        r = await api.http.request(method, path, json=body, headers=api.auth(weaker))
        assert r.status_code == 403, (weaker, r.text)
        assert r.json()["detail"] == f"this needs the {role} role; your token has {weaker}"
    r = await api.http.request(method, path, json=body, headers=api.auth(role))
    assert r.status_code not in (401, 403), r.text


# --- registration ------------------------------------------------------------------------------
async def test_register_reregister_conflict_and_detail(api: Api) -> None:
    await seed(api)
    device = {"device_id": "868120301234567", "kind": "smoke", "unit_id": "U-zg", "location": "3F kitchen",
              "heartbeat_s": 3600, "thresholds": {"smoke_temp_c": 60}, "cell_id": "1A2B3C"}
    r = await api.http.post("/api/v1/devices", json=device, headers=api.auth("operator"))
    assert r.status_code == 201
    assert (r.json()["region"], r.json()["status"], r.json()["was_quarantined"]) == (
        f"{ZHANGGONG}/南外街道",
        "unknown",
        False,
    )
    r = await api.http.post("/api/v1/devices", json={**device, "heartbeat_s": 7200}, headers=api.auth("operator"))
    assert r.status_code == 200 and r.json()["heartbeat_s"] == 7200
    r = await api.http.post("/api/v1/devices", json={**device, "kind": "gas"}, headers=api.auth("operator"))
    assert (r.status_code, r.json()["detail"]) == (409, "device 868120301234567 is registered as smoke, not gas")
    r = await api.http.post("/api/v1/devices", json={**device, "unit_id": "U-missing"}, headers=api.auth("operator"))
    assert (r.status_code, r.json()["detail"]) == (422, "unit U-missing is not registered")
    r = await api.http.post("/api/v1/devices", json={"device_id": "a b", "kind": "smoke"}, headers=api.auth("operator"))
    assert (r.status_code, r.json()["detail"]) == (
        422,
        "device_id 'a b' must be 1 to 64 characters of A-Z a-z 0-9 _ . : -",
    )

    apply(api, ("868120301234567", Kind.smoke, Event.alarm))
    detail = (await api.http.get("/api/v1/devices/868120301234567", headers=api.auth("viewer"))).json()
    assert detail["status"] == "alarm" and detail["battery_pct"] == 77.0
    assert datetime.fromisoformat(detail["last_seen"].replace("Z", "+00:00")) == datetime.fromtimestamp(T0 / 1000, UTC)
    assert detail["values"]["battery_pct"]["value"] == 77.0
    assert (detail["location"], detail["thresholds"], detail["cell_id"]) == (
        "3F kitchen",
        {"smoke_temp_c": 60.0},
        "1A2B3C",
    )
    assert "alarm" in detail["flags"]
    r = await api.http.get("/api/v1/devices/nobody", headers=api.auth("viewer"))
    assert (r.status_code, r.json()["detail"]) == (404, "unknown device nobody")


async def test_registering_an_auto_registered_device_lifts_quarantine(api: Api) -> None:
    await api.pool.execute("INSERT INTO devices (device_id, kind, quarantined) VALUES ('q1', 'gas', true)")
    api.fleet.upsert("q1", Kind.gas, quarantined=True)
    r = await api.http.post("/api/v1/devices", json={"device_id": "q1", "kind": "gas"}, headers=api.auth("operator"))
    assert r.status_code == 200
    assert (r.json()["quarantined"], r.json()["was_quarantined"]) == (False, True)
    assert "quarantined" not in r.json()["flags"]


async def test_import_csv_and_json_lines(api: Api) -> None:
    await seed(api)
    csv_body = "device_id,kind,unit_id\nzg-gas-0,gas,U-zg\nzg-smoke-0,gas,U-zg\nnew-1,smoke,U-x\nnew-2,smoke,U-zg\n"
    r = await api.http.post("/api/v1/devices/import", content=csv_body.encode(),
                            headers={**api.auth("operator"), "content-type": "text/csv; charset=utf-8"})
    answer = r.json()
    assert (answer["created"], answer["updated"], answer["rejected"]) == (1, 1, 2)
    assert answer["errors"] == [
        {"line": 3, "device_id": "zg-smoke-0", "reason": "device zg-smoke-0 is registered as smoke, not gas"},
        {"line": 4, "device_id": "new-1", "reason": "unit U-x is not registered"},
    ]
    lines = "\n".join(json.dumps(o) for o in (
        {"device_id": "j1", "kind": "water", "unit_id": "U-nk", "heartbeat_s": 600},
        {"device_id": "j2", "kind": "fridge"},
    ))
    r = await api.http.post("/api/v1/devices/import", content=lines,
                            headers={**api.auth("operator"), "content-type": "application/x-ndjson"})
    assert (r.json()["created"], r.json()["rejected"]) == (1, 1)
    assert (
        r.json()["errors"][0]["reason"]
        == "unknown kind 'fridge'; expected one of smoke, gas, electrical, water, uitd, charger"
    )
    assert fleet_query.snapshot(api.fleet, api.fleet.slot("j1"))["region"] == NANKANG

    r = await api.http.post(
        "/api/v1/devices/import", content="{}", headers={**api.auth("operator"), "content-type": "application/json"}
    )
    assert (r.status_code, r.json()["detail"]) == (415, "send text/csv or application/x-ndjson")
    r = await api.http.post(
        "/api/v1/devices/import", content="id,kind\n", headers={**api.auth("operator"), "content-type": "text/csv"}
    )
    assert r.status_code == 422 and r.json()["detail"].startswith("unknown column(s) id;")
    r = await api.http.post("/api/v1/devices/import", content=csv_body,
                            headers={**api.auth("zhanggong_operator"), "content-type": "text/csv"})
    assert (r.status_code, r.json()["detail"]) == (403, "bulk import needs a token without a region or industry scope")


# --- listing -----------------------------------------------------------------------------------
async def walk(api: Api, who: str = "admin", limit: int = 7, **params: str) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        q = {**params, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
        page = (await api.http.get("/api/v1/devices", params=q, headers=api.auth(who))).json()
        assert len(page["items"]) <= limit
        seen += [item["device_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


async def test_pagination_walks_every_device_exactly_once(api: Api) -> None:
    await seed(api)
    body = "device_id,kind,unit_id\n" + "".join(f"bulk-{i:03d},{('smoke', 'gas')[i % 2]},U-nk\n" for i in range(150))
    await api.http.post(
        "/api/v1/devices/import", content=body, headers={**api.auth("operator"), "content-type": "text/csv"}
    )
    expected = sorted(await api.pool.fetchval("SELECT array_agg(device_id) FROM devices"))
    for limit in (1, 7, 158, 1000):
        seen = await walk(api, limit=limit)
        assert sorted(seen) == expected and len(seen) == len(set(seen))
    item = (await api.http.get("/api/v1/devices", params={"limit": 1}, headers=api.auth())).json()["items"][0]
    assert {"device_id", "kind", "unit_id", "region", "status", "last_seen", "battery_pct", "values"} <= item.keys()
    r = await api.http.get("/api/v1/devices", params={"cursor": "no-such-device"}, headers=api.auth())
    assert r.status_code == 400


async def test_filters(api: Api) -> None:
    await seed(api)
    apply(api, ("zg-smoke-0", Kind.smoke, Event.alarm), ("nk-elec-0", Kind.electrical, Event.fault),
          ("zg-gas-0", Kind.gas, Event.heartbeat))
    assert sorted(await walk(api, kind="gas")) == ["loose-gas-0", "zg-gas-0"]
    assert await walk(api, status="alarm") == ["zg-smoke-0"]
    assert await walk(api, status="fault") == ["nk-elec-0"]
    assert await walk(api, status="online") == ["zg-gas-0"]
    assert len(await walk(api, status="unknown")) == 5
    assert sorted(await walk(api, unit_id="U-nk")) == ["nk-elec-0", "nk-smoke-0"]
    assert len(await walk(api, region="江西省/赣州市")) == 6
    assert sorted(await walk(api, region=NANKANG, kind="smoke")) == ["nk-smoke-0"]
    assert await walk(api, region="江西省/赣州市/章贡") == []  # whole path segments only
    r = await api.http.get("/api/v1/devices", params={"status": "sleepy"}, headers=api.auth())
    assert r.status_code == 422


async def test_region_scoped_tokens_see_only_their_regions(api: Api) -> None:
    await seed(api)
    assert sorted(await walk(api, "zhanggong_viewer")) == ["zg-gas-0", "zg-smoke-0", "zg-smoke-1", "zg-smoke-2"]
    assert await walk(api, "zhanggong_viewer", region=NANKANG) == []
    assert (await api.http.get("/api/v1/devices/zg-gas-0", headers=api.auth("zhanggong_viewer"))).status_code == 200
    for path in ("/api/v1/devices/nk-smoke-0", "/api/v1/devices/loose-gas-0", "/api/v1/units/U-nk",
                 "/api/v1/devices/nk-smoke-0/readings", "/api/v1/devices/nk-smoke-0/commands"):
        r = await api.http.get(path, headers=api.auth("zhanggong_viewer"))
        assert r.status_code == 403, path
    units = (await api.http.get("/api/v1/units", headers=api.auth("zhanggong_viewer"))).json()["items"]
    assert [u["unit_id"] for u in units] == ["U-zg"]
    op = api.auth("zhanggong_operator")
    r = await api.http.post("/api/v1/devices/nk-elec-0/commands", json={"cmd": "breaker_trip"}, headers=op)
    assert r.status_code == 403
    r = await api.http.post("/api/v1/devices/nk-elec-0/maintenance", json={"on": True}, headers=op)
    assert r.status_code == 403
    r = await api.http.post("/api/v1/units", json={"name": "x", "region": NANKANG}, headers=op)
    assert (r.status_code, r.json()["detail"]) == (403, f"region {NANKANG} is outside your regions")
    r = await api.http.post(
        "/api/v1/devices", json={"device_id": "new", "kind": "smoke", "unit_id": "U-nk"}, headers=op
    )
    assert r.status_code == 403
    r = await api.http.post(
        "/api/v1/devices", json={"device_id": "new", "kind": "smoke", "unit_id": "U-zg"}, headers=op
    )
    assert r.status_code == 201
    stats = (await api.http.get("/api/v1/stats/overview", headers=api.auth("zhanggong_viewer"))).json()
    assert stats["total"] == 5 and stats["by_region"] == {"江西省": 5}


# --- units -------------------------------------------------------------------------------------
async def test_units_create_replace_list_and_maintenance(api: Api) -> None:
    contacts = [{"name": "张三", "phone": "13800000000", "role": "owner"}]
    r = await api.http.post(
        "/api/v1/units",
        json={
            "name": "农贸市场",
            "address": "南外街道1号",
            "region": f" {ZHANGGONG}/ ",
            "industry": "commercial",
            "contacts": contacts,
        },
        headers=api.auth("operator"),
    )
    assert r.status_code == 201
    unit = r.json()
    assert (unit["region"], unit["contacts"], unit["risk_colour"], unit["maintenance"]) == (
        ZHANGGONG,
        contacts,
        None,
        False,
    )
    r = await api.http.post(
        "/api/v1/units", json={"unit_id": unit["unit_id"], "name": "农贸市场二"}, headers=api.auth("operator")
    )
    assert r.status_code == 200 and r.json()["region"] == ""
    for i in range(5):
        await api.http.post(
            "/api/v1/units", json={"unit_id": f"U{i}", "name": f"n{i}", "region": NANKANG}, headers=api.auth()
        )
    ids: list[str] = []
    cursor = None
    while True:
        page = (await api.http.get("/api/v1/units", params={"limit": 2, **({"cursor": cursor} if cursor else {})},
                                   headers=api.auth("viewer"))).json()
        ids += [u["unit_id"] for u in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert ids == sorted(["U0", "U1", "U2", "U3", "U4", unit["unit_id"]])
    by_region = (await api.http.get("/api/v1/units", params={"region": NANKANG}, headers=api.auth())).json()["items"]
    assert len(by_region) == 5
    r = await api.http.post(
        "/api/v1/devices", json={"device_id": "d1", "kind": "smoke", "unit_id": "U3"}, headers=api.auth()
    )
    assert r.json()["in_maintenance"] is False
    r = await api.http.post("/api/v1/units/U3/maintenance", json={"on": True}, headers=api.auth("operator"))
    assert (r.json()["unit_id"], r.json()["maintenance"], r.json()["by"]) == ("U3", True, "op")
    assert (await api.http.get("/api/v1/devices/d1", headers=api.auth())).json()["in_maintenance"] is True
    assert (await api.http.get("/api/v1/units/U3", headers=api.auth())).json()["maintenance"] is True
    r = await api.http.post("/api/v1/devices/d1/maintenance", json={"on": True}, headers=api.auth("operator"))
    detail = (await api.http.get("/api/v1/devices/d1", headers=api.auth())).json()
    assert detail["maintenance"] is True and "maintenance" in detail["flags"]
    assert (await api.http.get("/api/v1/units/nope", headers=api.auth())).status_code == 404


# --- readings, commands ------------------------------------------------------------------------
async def test_readings_newest_first_with_range_and_pages(api: Api) -> None:
    await seed(api)
    t0 = datetime.fromtimestamp(T0 / 1000, UTC)
    await api.pool.executemany(
        "INSERT INTO readings (device_id, ts, received_at, seq, dedup, kind, event, metrics) "
        "VALUES ($1, $2, $2, $3, $4, 'gas', $5, $6)",
        [
            (
                "zg-gas-0",
                t0 + timedelta(minutes=i),
                i,
                i * 7919,
                "alarm" if i == 7 else "report",
                json.dumps({"gas_lel_pct": i}),
            )
            for i in range(10)
        ],
    )
    url = "/api/v1/devices/zg-gas-0/readings"
    page = (await api.http.get(url, headers=api.auth("viewer"))).json()
    assert [r["seq"] for r in page["items"]] == list(range(9, -1, -1)) and page["next_cursor"] is None
    assert page["items"][2]["event"] == "alarm" and page["items"][2]["metrics"] == {"gas_lel_pct": 7}
    ranged = (await api.http.get(url, params={"from": str(T0 + 120_000), "to": (t0 + timedelta(minutes=6)).isoformat()},
                                 headers=api.auth())).json()
    assert [r["seq"] for r in ranged["items"]] == [5, 4, 3, 2]
    seqs: list[int] = []
    cursor = None
    while True:
        page = (
            await api.http.get(url, params={"limit": 3, **({"cursor": cursor} if cursor else {})}, headers=api.auth())
        ).json()
        seqs += [r["seq"] for r in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert seqs == list(range(9, -1, -1))
    assert (await api.http.get(url, params={"from": "yesterday"}, headers=api.auth())).status_code == 422


async def test_commands_routes(api: Api) -> None:
    await seed(api)
    r = await api.http.post("/api/v1/devices/zg-gas-0/commands", json={"cmd": "valve_close", "timeout_s": 120},
                            headers=api.auth("operator"))
    assert r.status_code == 201
    cmd = r.json()
    assert (cmd["state"], cmd["cmd"], cmd["timeout_s"], cmd["actor"]) == ("sent", "valve_close", 120.0, "op")
    r = await api.http.post(
        "/api/v1/devices/zg-smoke-0/commands", json={"cmd": "valve_close"}, headers=api.auth("operator")
    )
    assert (r.status_code, r.json()["detail"]) == (422, "valve_close applies to gas devices, not smoke")
    r = await api.http.post("/api/v1/devices/nobody/commands", json={"cmd": "reboot"}, headers=api.auth("operator"))
    assert r.status_code == 404
    got = (await api.http.get(f"/api/v1/commands/{cmd['cmd_id']}", headers=api.auth("viewer"))).json()
    assert got["state"] == "sent" and [e["state"] for e in got["events"]] == ["sent"]
    for cmd_name in ("mute", "self_test", "reboot"):
        api.clock.now += 1000
        await api.http.post("/api/v1/devices/zg-gas-0/commands", json={"cmd": cmd_name}, headers=api.auth("operator"))
    names: list[str] = []
    cursor = None
    while True:
        page = (
            await api.http.get(
                "/api/v1/devices/zg-gas-0/commands",
                params={"limit": 3, **({"cursor": cursor} if cursor else {})},
                headers=api.auth("viewer"),
            )
        ).json()
        names += [c["cmd"] for c in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert names == ["reboot", "self_test", "mute", "valve_close"]
    assert (await api.http.get(f"/api/v1/commands/{uuid.uuid4()}", headers=api.auth())).status_code == 404


# --- administration and stats ------------------------------------------------------------------
async def test_push_sources_never_answer_secrets(api: Api) -> None:
    r = await api.http.post("/api/v1/push-sources", json={"name": "gw", "platform": "generic", "secret": "s3cret"},
                            headers=api.auth())
    assert r.status_code == 201 and "s3cret" not in r.text and r.json()["has_secret"] is True
    r = await api.http.post(
        "/api/v1/push-sources", json={"name": "gw", "platform": "generic", "secret": "other"}, headers=api.auth()
    )
    assert r.status_code == 200
    listed = await api.http.get("/api/v1/push-sources", headers=api.auth())
    assert [s["name"] for s in listed.json()["items"]] == ["gw"] and "other" not in listed.text
    assert await api.pool.fetchval("SELECT secret FROM push_sources WHERE name = 'gw'") == "other"
    r = await api.http.post(
        "/api/v1/push-sources", json={"name": "bad name", "platform": "generic"}, headers=api.auth()
    )
    assert r.status_code == 422


async def test_dead_letters_newest_first_in_base64(api: Api) -> None:
    raws = [b"\xa5\x01 bad crc", b"{not json"]
    for i, raw in enumerate(raws):
        await api.pool.execute(
            "INSERT INTO dead_letters (transport, source, reason, raw) VALUES ('mqtt', $1, 'bad', $2)",
            f"mqtt:t{i}",
            raw,
        )
    page = (await api.http.get("/api/v1/dead-letters", params={"limit": 1}, headers=api.auth())).json()
    assert base64.b64decode(page["items"][0]["raw"]) == raws[1]
    rest = (
        await api.http.get("/api/v1/dead-letters", params={"cursor": page["next_cursor"]}, headers=api.auth())
    ).json()
    assert [base64.b64decode(d["raw"]) for d in rest["items"]] == [raws[0]] and rest["next_cursor"] is None
    assert (await api.http.get("/api/v1/dead-letters", params={"transport": "tcp"}, headers=api.auth())).json()[
        "items"
    ] == []


async def test_tokens_are_answered_once_and_work(api: Api) -> None:
    await seed(api)
    r = await api.http.post("/api/v1/tokens", json={"name": "grid", "role": "viewer", "regions": [f"{NANKANG}/"]},
                            headers=api.auth())
    assert r.status_code == 201 and r.json()["regions"] == [NANKANG]
    token = r.json()["token"]
    stored = await api.pool.fetchval("SELECT token_hash FROM api_tokens WHERE name = 'grid'")
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    listed = (await api.http.get("/api/v1/devices", headers={"Authorization": f"Bearer {token}"})).json()
    assert sorted(i["device_id"] for i in listed["items"]) == ["nk-elec-0", "nk-smoke-0"]


async def test_stats_overview(api: Api) -> None:
    await seed(api)
    apply(api, ("zg-smoke-0", Kind.smoke, Event.alarm), ("nk-elec-0", Kind.electrical, Event.heartbeat),
          ("zg-gas-0", Kind.gas, Event.heartbeat))
    api.fleet.sweep(T0 + 301 * 2500)  # the electrical monitor is 2.5 x 5 min overdue
    now = datetime.fromtimestamp(T0 / 1000, UTC)
    await api.pool.executemany(
        """INSERT INTO alarms (alarm_key, type, severity, response, status, region, first_seen, last_seen, rule)
           VALUES ($1, $2, $3, 'verify', $4, $5, $6, $6, 'test')""",
        [("zg-smoke-0", "smoke", "major", "active_unack", f"{ZHANGGONG}/南外街道", now),
         ("nk-elec-0", "offline", "minor", "active_ack", NANKANG, now),
         ("old", "smoke", "major", "resolved", NANKANG, now)],
    )
    stats = (await api.http.get("/api/v1/stats/overview", headers=api.auth("viewer"))).json()
    assert stats["total"] == 8
    assert stats["by_status"] == {"unknown": 5, "online": 1, "offline": 1, "fault": 0, "alarm": 1}
    assert stats["by_kind"] == {"smoke": 4, "gas": 2, "electrical": 1, "water": 1, "uitd": 0, "charger": 0}
    assert stats["by_region"] == {"江西省": 6} and stats["no_region"] == 2
    assert [d["device_id"] for d in stats["offline_devices"]] == ["nk-elec-0"]
    assert stats["active_alarms"] == {"total": 2, "unacknowledged": 1,
                                      "by_severity": {"critical": 0, "major": 1, "minor": 1, "warning": 0}}
    deep = (await api.http.get("/api/v1/stats/overview", params={"region_depth": 3}, headers=api.auth())).json()
    assert deep["by_region"] == {ZHANGGONG: 4, NANKANG: 2}
    scoped = (await api.http.get("/api/v1/stats/overview", headers=api.auth("zhanggong_viewer"))).json()
    assert scoped["active_alarms"]["total"] == 1 and scoped["offline_devices"] == []

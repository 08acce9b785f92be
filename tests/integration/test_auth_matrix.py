"""Auth on every /api/v1 route, generated from `app.routes` so a new route cannot be forgotten:
401 without or with a bad token, 403 for a too-weak role or outside a region scope; scopes by
whole region path segments (`zone/1` never sees `zone/10`) and by industry on every list, count,
detail and stream route, and `region=`/`industry=` filters that only narrow; tokens hashed at
rest; no secret in the logs of a real `miaoxiang serve`; CORS closed by default."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import io
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute

from alerting.risk_report import TITLES
from miaoxiang.app import create_app
from miaoxiang.settings import Settings
from tests.integration.faultkit import ADMIN_TOKEN, service, service_env
from tests.service import RunningService, running_service

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# platforms authenticate by signature (CONTRACT §3); the device catalogue holds no data (labels, units, codes)
PUBLIC = re.compile(r"^/api/v1/(ingest/push/|meta$)")
ADMIN_ONLY = {("GET", "/api/v1/push-sources"), ("POST", "/api/v1/push-sources"), ("GET", "/api/v1/dead-letters"),
              ("GET", "/api/v1/push-sources/{name}"), ("DELETE", "/api/v1/push-sources/{name}"),
              ("POST", "/api/v1/tokens"), ("GET", "/api/v1/escalation-contacts"),
              ("POST", "/api/v1/escalation-contacts"), ("DELETE", "/api/v1/escalation-contacts"),
              ("PUT", "/api/v1/units/{unit_id}/risk-override"),
              ("DELETE", "/api/v1/units/{unit_id}/risk-override")}
ADMIN_PREFIXES = re.compile(r"^/api/v1/(channels|responders)(/|$)")  # CONTRACT §9: admin only, every method


def admin_only(method: str, path: str) -> bool:
    return (method, path) in ADMIN_ONLY or bool(ADMIN_PREFIXES.match(path))


def api_routes(settings: Settings) -> list[tuple[str, str]]:
    """(method, path) of every HTTP route under /api/v1, from the app itself."""
    out = []
    for r in flat_routes(create_app(settings).routes):
        if isinstance(r, APIRoute) and r.path.startswith("/api/v1") and not PUBLIC.match(r.path):
            out += [(m, r.path) for m in sorted(r.methods - {"HEAD", "OPTIONS"})]
    assert len(out) >= 20
    return out


def flat_routes(routes: list[Any], prefix: str = "") -> list[Any]:
    """Routes with included routers expanded (FastAPI 0.165 keeps them as `_IncludedRouter`)."""
    out: list[Any] = []
    for r in routes:
        inner = getattr(r, "original_router", None)
        if inner is not None:
            out += flat_routes(inner.routes, prefix + r.include_context.prefix)
        else:
            out.append(r)
    assert not prefix or all(getattr(r, "path", prefix).startswith(prefix) for r in out)
    return out


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


async def call(svc: RunningService, method: str, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {} if method in ("POST", "PUT", "PATCH") else None
    return await svc.http.request(method, concrete(path), json=body, headers=headers)


async def token(
    svc: RunningService, role: str, regions: list[str] | None = None, industries: list[str] | None = None
) -> str:
    body: dict[str, Any] = {"name": f"{role}-t", "role": role, "regions": regions or []}
    if industries is not None:
        body["industries"] = industries
    r = await svc.http.post("/api/v1/tokens", json=body, headers=svc.auth())
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


async def test_every_route_needs_a_token_and_the_right_role(settings: Settings) -> None:
    routes = api_routes(settings)
    async with running_service(settings) as svc:
        viewer, operator = await token(svc, "viewer"), await token(svc, "operator")
        for method, path in routes:
            for bad in (None, "not-a-token", ADMIN_TOKEN.upper()):
                r = await call(svc, method, path, bad)
                assert r.status_code == 401, f"{method} {path} with {bad!r}: {r.status_code}"
            r = await call(svc, method, path, "Basic abc")  # wrong scheme is no token
            assert r.status_code == 401
            weakest_denied = viewer if method != "GET" or admin_only(method, path) else None
            if weakest_denied is not None:
                r = await call(svc, method, path, weakest_denied)
                assert r.status_code == 403, f"viewer on {method} {path}: {r.status_code} {r.text[:100]}"
            if admin_only(method, path):
                r = await call(svc, method, path, operator)
                assert r.status_code == 403, f"operator on {method} {path}: {r.status_code}"
            elif method == "GET" and not path.endswith("/stream"):
                # a viewer may read: not 401/403 (404/422 for the dummy ids is fine)
                r = await call(svc, method, path, viewer)
                assert r.status_code not in (401, 403, 500), f"viewer on GET {path}: {r.status_code}"
        # the alarm stream and WebSocket (query token for EventSource)
        r = await svc.http.get("/api/v1/alarms/stream", params={"token": "nope"})
        assert r.status_code == 401
        ws_routes = [r.path for r in flat_routes(svc.app.routes) if isinstance(r, APIWebSocketRoute)]
        assert ws_routes == ["/api/v1/alarms/ws"]
        import websockets

        ws_url = svc.base_url.replace("http", "ws") + "/api/v1/alarms/ws"
        with pytest.raises(websockets.InvalidStatus) as refused:  # a bad query token: handshake refused
            await websockets.connect(ws_url + "?token=nope")
        assert refused.value.response.status_code == 403
        async with websockets.connect(ws_url) as ws:  # a bad token in the first message: closed, policy
            await ws.send(json.dumps({"token": "nope"}))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    print(f"\nAUTH matrix: {len(routes)} routes x (3 bad tokens + wrong scheme + roles)")


async def test_region_scope_is_enforced(settings: Settings) -> None:
    async with running_service(settings) as svc:
        admin = svc.auth()
        unit = {"unit_id": "u-gz", "name": "赣州商场", "region": "江西省/赣州市/章贡区"}
        assert (await svc.http.post("/api/v1/units", json=unit, headers=admin)).status_code == 201
        dev = {"device_id": "868120300000001", "kind": "smoke", "unit_id": "u-gz"}
        assert (await svc.http.post("/api/v1/devices", json=dev, headers=admin)).status_code == 201
        outside = {"Authorization": f"Bearer {await token(svc, 'operator', ['江西省/南昌市'])}"}
        inside = {"Authorization": f"Bearer {await token(svc, 'viewer', ['江西省/赣州市'])}"}
        assert (await svc.http.get("/api/v1/devices/868120300000001", headers=outside)).status_code == 403
        assert (await svc.http.get("/api/v1/devices/868120300000001", headers=inside)).status_code == 200
        r = await svc.http.post("/api/v1/devices", json={**dev, "device_id": "868120300000002"}, headers=outside)
        assert r.status_code == 403
        listed = (await svc.http.get("/api/v1/devices", headers=outside)).json()["items"]
        assert listed == []


# --- scopes: whole region segments and industries on every list, count, detail and stream route ---
@dataclass
class World:
    """Three units: u1 (zone/1, school), u10 (zone/10, hospital), u1h (zone/1/a, hospital); one
    smoke detector and one active alarm each; alarm events in the order u10, u1, u1h."""

    svc: RunningService
    alarm: dict[str, str]  # unit id -> alarm id
    events: dict[str, int]  # unit id -> event id of its alarm's event


UNITS = {"u1": ("zone/1", "school"), "u10": ("zone/10", "hospital"), "u1h": ("zone/1/a", "hospital")}


async def world(svc: RunningService, database_url: str) -> World:
    admin = svc.auth()
    svc.app.state.services.risk.ttl_s = 0  # risk grades of units registered just now
    for unit_id, (region, industry) in UNITS.items():
        r = await svc.http.post("/api/v1/units", headers=admin,
                                json={"unit_id": unit_id, "name": unit_id, "region": region, "industry": industry})
        assert r.status_code == 201, r.text
        r = await svc.http.post("/api/v1/devices", headers=admin, json={"device_id": f"d-{unit_id}", "kind": "smoke",
                                                                         "unit_id": unit_id})
        assert r.status_code == 201, r.text
    alarm, events = {}, {}
    db = await asyncpg.connect(database_url)
    try:
        for unit_id in ("u10", "u1", "u1h"):
            region = UNITS[unit_id][0]
            alarm_id = await db.fetchval(
                """INSERT INTO alarms (alarm_key, type, severity, response, status, device_ids, unit_id, region,
                                       first_seen, last_seen, rule)
                   VALUES ($1, 'smoke', 'major', 'verify', 'active_unack', ARRAY[$1], $2, $3, now(), now(), 'smoke')
                   RETURNING alarm_id""", f"d-{unit_id}", unit_id, region)
            events[unit_id] = await db.fetchval(
                """INSERT INTO alarm_events (alarm_id, action, snapshot) VALUES ($1, 'raised', jsonb_build_object(
                       'alarm_id', $5::text, 'unit_id', $2::text, 'region', $3::text, 'device_ids', ARRAY[$4::text]))
                   RETURNING event_id""", alarm_id, unit_id, region, f"d-{unit_id}", str(alarm_id))
            alarm[unit_id] = str(alarm_id)
    finally:
        await db.close()
    return World(svc, alarm, events)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def listed(svc: RunningService, path: str, auth: dict[str, str], key: str, **params: Any) -> list[str]:
    r = await svc.http.get(path, headers=auth, params=params)
    assert r.status_code == 200, f"{path} {params}: {r.status_code} {r.text[:200]}"
    return sorted(str(item[key]) for item in r.json()["items"])


async def streamed(w: World, secret: str, last_unit: str | None) -> tuple[list[str], list[str]]:
    """Unit ids of the alarm events the SSE stream and the WebSocket send from the start, up to
    the event of `last_unit`'s alarm (None: what they send within a second)."""
    last = str(w.events[last_unit]) if last_unit else None
    sse: list[str] = []
    async with w.svc.http.stream("GET", "/api/v1/alarms/stream", params={"token": secret, "last_event_id": "0"}) as r:
        assert r.status_code == 200
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10 if last else 1):
                event_id = ""
                async for line in r.aiter_lines():
                    if line.startswith("id:"):
                        event_id = line.partition(":")[2].strip()
                    elif line.startswith("data:"):
                        sse.append(json.loads(line.partition(":")[2])["unit_id"])
                        if event_id == last:
                            break
    import websockets

    ws_url = w.svc.base_url.replace("http", "ws") + f"/api/v1/alarms/ws?token={secret}&last_event_id=0"
    ws: list[str] = []
    async with websockets.connect(ws_url) as conn:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10 if last else 1):
                while True:
                    message = json.loads(await conn.recv())
                    ws.append(message["data"]["unit_id"])
                    if message["id"] == last:
                        break
    return sse, ws


def report_totals(text: str) -> tuple[int, int]:
    """(alarms over every week, devices at the last week) of a risk report CSV (a note, then the table)."""
    rows = list(csv.DictReader(io.StringIO(text.split("\n", 1)[1])))
    return sum(int(r[TITLES["alarms"]]) for r in rows), int(rows[-1][TITLES["devices"]])


async def check_scope(w: World, auth: dict[str, str], sees: Callable[[str], bool]) -> None:
    """Every list, count, detail and stream route shows exactly the units `sees` admits."""
    svc = w.svc
    units = sorted(u for u in UNITS if sees(u))
    assert await listed(svc, "/api/v1/alarms", auth, "unit_id") == units
    assert await listed(svc, "/api/v1/devices", auth, "unit_id") == units
    assert await listed(svc, "/api/v1/units", auth, "unit_id") == units
    assert await listed(svc, "/api/v1/risk/units", auth, "unit_id") == units
    overview = (await svc.http.get("/api/v1/stats/overview", headers=auth)).json()
    assert (overview["total"], overview["active_alarms"]["total"]) == (len(units), len(units))
    by_industry = await svc.http.get("/api/v1/risk/aggregates", params={"by": "industry"}, headers=auth)
    assert sum(g["units"] for g in by_industry.json()["items"]) == len(units)
    for unit_id in UNITS:
        shown = sees(unit_id)
        for path in (f"/api/v1/alarms/{w.alarm[unit_id]}", f"/api/v1/alarms/{w.alarm[unit_id]}/notifications"):
            r = await svc.http.get(path, headers=auth)
            assert r.status_code == (200 if shown else 404), (path, r.status_code)
        device = f"/api/v1/devices/d-{unit_id}"
        for path in (device, f"{device}/readings", f"{device}/commands", f"/api/v1/units/{unit_id}",
                     f"/api/v1/risk/units/{unit_id}"):
            r = await svc.http.get(path, headers=auth)
            assert r.status_code == (200 if shown else 403), (path, r.status_code, r.text[:200])
    secret = auth["Authorization"].removeprefix("Bearer ")
    in_order = [u for u in ("u10", "u1", "u1h") if sees(u)]
    got = await streamed(w, secret, in_order[-1] if in_order else None)
    assert got == (in_order, in_order)


async def test_region_scope_is_by_whole_segments_on_every_route(settings: Settings) -> None:
    async with running_service(settings) as svc:
        w = await world(svc, settings.database_url)
        admin = svc.auth()
        await check_scope(w, admin, lambda u: True)
        zone1 = bearer(await token(svc, "viewer", ["zone/1"]))
        await check_scope(w, zone1, lambda u: u != "u10")
        await check_scope(w, bearer(await token(svc, "viewer", ["zone/10"])), lambda u: u == "u10")
        # LIKE metacharacters in a scope are literal: z_ne/1 is not zone/1
        await check_scope(w, bearer(await token(svc, "viewer", ["z_ne/1", "zone%"])), lambda u: False)

        # a region= filter narrows the scope, never widens it, by whole segments too
        for path in ("/api/v1/alarms", "/api/v1/devices", "/api/v1/units", "/api/v1/risk/units"):
            assert await listed(svc, path, zone1, "unit_id", region="zone/10") == [], path
            assert await listed(svc, path, zone1, "unit_id", region="zone") == ["u1", "u1h"], path
            assert await listed(svc, path, zone1, "unit_id", region="zone/1/a") == ["u1h"], path
            assert await listed(svc, path, admin, "unit_id", region="zone/1") == ["u1", "u1h"], path
        overview = (await svc.http.get("/api/v1/stats/overview", params={"region": "zone/10"}, headers=zone1)).json()
        assert (overview["total"], overview["active_alarms"]["total"]) == (0, 0)
        for path in ("/api/v1/risk/trends", "/api/v1/risk/report"):
            r = await svc.http.get(path, params={"region": "zone/10"}, headers=zone1)
            assert r.status_code == 403, path
        r = await svc.http.get("/api/v1/risk/report", params={"region": "zone/1"}, headers=zone1)
        assert report_totals(r.text) == (2, 2)

        # acting on an alarm outside the scope: as if it did not exist
        operator = bearer(await token(svc, "operator", ["zone/1"]))
        r = await svc.http.post(f"/api/v1/alarms/{w.alarm['u10']}/ack", headers=operator)
        assert r.status_code == 404
        r = await svc.http.post(f"/api/v1/alarms/{w.alarm['u10']}/resolve", headers=operator,
                                json={"classification": "test"})
        assert r.status_code == 404
        assert (await svc.http.post(f"/api/v1/alarms/{w.alarm['u1']}/ack", headers=operator)).status_code == 200


async def test_industry_scope_holds_on_every_route(settings: Settings) -> None:
    async with running_service(settings) as svc:
        w = await world(svc, settings.database_url)
        hospitals = bearer(await token(svc, "viewer", industries=["hospital"]))
        await check_scope(w, hospitals, lambda u: UNITS[u][1] == "hospital")
        both = bearer(await token(svc, "viewer", ["zone/1"], ["hospital"]))  # both must match
        await check_scope(w, both, lambda u: u == "u1h")

        # an industry= filter narrows, never widens; unknown industries are refused with the list
        for path in ("/api/v1/alarms", "/api/v1/devices", "/api/v1/units", "/api/v1/risk/units"):
            assert await listed(svc, path, hospitals, "unit_id", industry="school") == [], path
            assert await listed(svc, path, hospitals, "unit_id", industry="school,hospital") == ["u10", "u1h"], path
            assert await listed(svc, path, svc.auth(), "unit_id", industry="school") == ["u1"], path
            r = await svc.http.get(path, params={"industry": "market"}, headers=hospitals)
            assert r.status_code == 422 and "rental_housing" in r.json()["detail"], path
        overview = (await svc.http.get("/api/v1/stats/overview", params={"industry": "school"}, headers=hospitals))
        assert (overview.json()["total"], overview.json()["active_alarms"]["total"]) == (0, 0)
        r = await svc.http.get("/api/v1/risk/report", headers=hospitals)
        assert report_totals(r.text) == (2, 2)
        r = await svc.http.get("/api/v1/risk/report", params={"region": "zone/1"}, headers=both)
        assert report_totals(r.text) == (1, 1)

        # writes and actions stay inside the industries
        operator = bearer(await token(svc, "operator", industries=["hospital"]))
        r = await svc.http.post(f"/api/v1/alarms/{w.alarm['u1']}/ack", headers=operator)
        assert r.status_code == 404
        assert (await svc.http.post(f"/api/v1/alarms/{w.alarm['u10']}/ack", headers=operator)).status_code == 200
        r = await svc.http.post("/api/v1/units", headers=operator,
                                json={"unit_id": "u1", "name": "x", "region": "zone/1", "industry": "hospital"})
        assert r.status_code == 403  # u1 is a school
        r = await svc.http.post("/api/v1/units", headers=operator, json={"name": "x", "industry": "school"})
        assert r.status_code == 403
        r = await svc.http.post("/api/v1/devices", headers=operator, json={"device_id": "d-x", "kind": "smoke",
                                                                            "unit_id": "u1"})
        assert r.status_code == 403
        assert (await svc.http.post("/api/v1/devices/d-u1/maintenance", headers=operator,
                                    json={"on": True})).status_code == 403
        r = await svc.http.post("/api/v1/units", headers=svc.auth(), json={"name": "x", "industry": "market"})
        assert r.status_code == 422 and "nine_small" in r.json()["detail"]
        r = await svc.http.post("/api/v1/tokens", headers=svc.auth(),
                                json={"name": "t", "role": "viewer", "industries": ["health"]})
        assert r.status_code == 422 and "hospital" in r.json()["detail"]


async def test_tokens_are_hashed_at_rest(settings: Settings) -> None:
    async with running_service(settings) as svc:
        secret = await token(svc, "operator")
        db = await asyncpg.connect(settings.database_url)
        try:
            rows = [dict(r) for r in await db.fetch("SELECT * FROM api_tokens")]
        finally:
            await db.close()
        assert len(rows) == 1 and rows[0]["token_hash"] == hashlib.sha256(secret.encode()).hexdigest()
        assert secret not in json.dumps(rows, default=str)
        listed = await svc.http.get("/api/v1/push-sources", headers=svc.auth())
        assert listed.status_code == 200


async def test_no_secret_in_logs_and_cors_closed(database_url: str, topic_prefix: str, tmp_path: Path) -> None:
    mqtt_pass, db_pass, push_secret = f"mqPw-{uuid.uuid4().hex[:8]}", f"dbPw-{uuid.uuid4().hex[:8]}", "pushS3cret-xyz"
    db_url = database_url.replace("postgres@", f"postgres:{db_pass}@", 1)  # trust auth ignores it
    env = service_env(database_url=db_url, mqtt_url=f"mqtt://mxuser:{mqtt_pass}@127.0.0.1:1883",
                      topic_prefix=topic_prefix, client_id=f"auth-{uuid.uuid4().hex[:8]}", log_level="DEBUG")
    log_path = tmp_path / "svc.log"
    with service(env, log_path) as svc:
        svc.start()
        h = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        httpx.post(f"{svc.base}/api/v1/push-sources", headers=h, timeout=5,
                   json={"name": "g", "platform": "generic", "secret": push_secret}).raise_for_status()
        httpx.get(f"{svc.base}/api/v1/devices", headers={"Authorization": f"Bearer {ADMIN_TOKEN}x"}, timeout=5)
        httpx.post(f"{svc.base}/api/v1/ingest/push/g", content=b"[1]", headers={"x-miaoxiang-signature": "sha256=00"},
                   timeout=5)
        listed = httpx.get(f"{svc.base}/api/v1/push-sources", headers=h, timeout=5).text
        origin = {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
        pre = httpx.options(f"{svc.base}/api/v1/alarms", headers=origin, timeout=5)
        got = httpx.get(f"{svc.base}/api/v1/alarms", headers={**h, "Origin": "https://evil.example"}, timeout=5)
        svc.stop()
    log = log_path.read_text(errors="replace")
    assert "lane subscribed" in log  # the log was captured
    for secret in (mqtt_pass, db_pass, ADMIN_TOKEN, push_secret):
        assert secret not in log, f"a secret is in the log: {secret[:4]}..."
    assert push_secret not in listed
    assert "access-control-allow-origin" not in pre.headers and "access-control-allow-origin" not in got.headers
    assert pre.status_code in (400, 405)

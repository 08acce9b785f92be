"""Auth on every /api/v1 route, generated from `app.routes` so a new route cannot be forgotten:
401 without or with a bad token, 403 for a too-weak role or outside a region scope; tokens
hashed at rest; no secret in the logs of a real `miaoxiang serve`; CORS closed by default."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute

from miaoxiang.app import create_app
from miaoxiang.settings import Settings
from tests.integration.faultkit import ADMIN_TOKEN, service, service_env
from tests.service import RunningService, running_service

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PUBLIC = re.compile(r"^/api/v1/ingest/push/")  # platforms authenticate by signature (CONTRACT §3)
ADMIN_ONLY = {("GET", "/api/v1/push-sources"), ("POST", "/api/v1/push-sources"), ("GET", "/api/v1/dead-letters"),
              ("POST", "/api/v1/tokens"), ("GET", "/api/v1/escalation-contacts"), ("POST", "/api/v1/escalation-contacts"),
              ("DELETE", "/api/v1/escalation-contacts")}


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


async def token(svc: RunningService, role: str, regions: list[str] | None = None) -> str:
    r = await svc.http.post("/api/v1/tokens", json={"name": f"{role}-t", "role": role, "regions": regions or []},
                            headers=svc.auth())
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
            weakest_denied = viewer if method != "GET" or (method, path) in ADMIN_ONLY else None
            if weakest_denied is not None:
                r = await call(svc, method, path, weakest_denied)
                assert r.status_code == 403, f"viewer on {method} {path}: {r.status_code} {r.text[:100]}"
            if (method, path) in ADMIN_ONLY:
                r = await call(svc, method, path, operator)
                assert r.status_code == 403, f"operator on {method} {path}: {r.status_code}"
            elif method == "GET" and not path.endswith("/stream"):  # a viewer may read: not 401/403 (404/422 for the dummy ids is fine)
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
    env = service_env(database_url=db_url, mqtt_url=f"mqtt://mxuser:{mqtt_pass}@127.0.0.1:1883", topic_prefix=topic_prefix,
                      client_id=f"auth-{uuid.uuid4().hex[:8]}", log_level="DEBUG")
    log_path = tmp_path / "svc.log"
    with service(env, log_path) as svc:
        svc.start()
        h = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        httpx.post(f"{svc.base}/api/v1/push-sources", headers=h, timeout=5,
                   json={"name": "g", "platform": "generic", "secret": push_secret}).raise_for_status()
        httpx.get(f"{svc.base}/api/v1/devices", headers={"Authorization": f"Bearer {ADMIN_TOKEN}x"}, timeout=5)
        httpx.post(f"{svc.base}/api/v1/ingest/push/g", content=b"[1]", headers={"x-miaoxiang-signature": "sha256=00"}, timeout=5)
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

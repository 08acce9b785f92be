"""The alarm routes and streams served by real uvicorn with a real pool: list filters and cursor,
detail with timeline, ack/resolve with roles and 409s, SSE resume with Last-Event-ID (from the
in-memory buffer and from alarm_events), `?token=`, WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
import websockets
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from alerting.api import router
from alerting.config import RuleConfig
from alerting.core import Correlator
from alerting.lifecycle import AlarmLifecycle
from alerting.metrics import AlarmMetrics
from alerting.model import AlarmType, Decision, Response, Severity
from alerting.service import AlarmService
from alerting.stream import AlarmHub, db_replay
from devices.auth import create_token
from devices.fleet import Fleet
from devices.kinds import Kind
from miaoxiang.embedded import free_port
from miaoxiang.migrate import migrate
from miaoxiang.settings import DEFAULT_MIGRATIONS_DIR, Settings
from tests.clock import Clock
from tests.lifespan_state import with_services

pytestmark = pytest.mark.integration
T0 = 1_795_341_600_000
GANZHOU = "江西省/赣州市/章贡区/南外街道"
HANGZHOU = "浙江省/杭州市/西湖区/北山街道"
ADMIN = {"Authorization": "Bearer test-admin-token"}


@dataclass
class Api:
    http: httpx.AsyncClient
    base: str
    pool: asyncpg.Pool
    service: AlarmService
    clock: Clock

    async def raise_(self, device: str, ts: int, type: AlarmType = AlarmType.smoke, action: str = "raise",
                     response: Response = Response.verify) -> None:
        d = Decision(action, f"device:{device}", type, Severity.major, response, f"{type.name}_rule", ts, [device],
                     None, [{"device_id": device, "ts_ms": ts}])
        await self.service.lifecycle.handle([d])
        await self.service.lifecycle.flush(ts)  # a repeat is coalesced until the next flush: write it now

    async def token(self, role: str, regions: list[str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {await create_token(self.pool, role, role, regions or [])}"}


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=6)
    async with pool.acquire() as conn:
        await migrate(conn, DEFAULT_MIGRATIONS_DIR)
    fleet = Fleet()
    fleet.set_unit("GZ", region=GANZHOU)
    fleet.set_unit("HZ", region=HANGZHOU)
    for i in range(1, 6):
        fleet.upsert(f"G{i}", Kind.smoke, unit_id="GZ")
        fleet.upsert(f"H{i}", Kind.gas, unit_id="HZ")
    clock = Clock(T0)
    metrics = AlarmMetrics(CollectorRegistry())
    hub = AlarmHub(db_replay(pool), buffer_size=4, heartbeat_s=0.2, metrics=metrics)
    lifecycle = AlarmLifecycle(pool, hub, fleet, clock, metrics=metrics)
    service = AlarmService(pool, fleet, Correlator(RuleConfig()), lifecycle, hub, clock)
    app = FastAPI()
    app.include_router(router)
    services = SimpleNamespace(admin_token=settings.admin_token, pool=pool, alarms=service)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(with_services(app, services), host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            await asyncio.sleep(0.01)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            yield Api(http, base, pool, service, clock)
    finally:
        server.should_exit = True
        await task
        await pool.close()


# --- list, detail, ack, resolve ---------------------------------------------------------------
async def test_list_filters_newest_first_with_cursor(api: Api) -> None:
    for i in range(1, 6):
        await api.raise_(f"G{i}", T0 + i * 60_000)
    await api.raise_("H1", T0 + 400_000, AlarmType.gas_leak, response=Response.immediate)
    await api.raise_("G1", T0 + 500_000, action="clear")
    r = await api.http.get("/api/v1/alarms", params={"limit": 4}, headers=ADMIN)
    assert r.status_code == 200
    page = r.json()
    assert [a["device_ids"] for a in page["items"]] == [["H1"], ["G5"], ["G4"], ["G3"]]
    r2 = await api.http.get("/api/v1/alarms", params={"limit": 4, "cursor": page["next_cursor"]}, headers=ADMIN)
    assert [a["device_ids"] for a in r2.json()["items"]] == [["G2"], ["G1"]] and r2.json()["next_cursor"] is None
    first = page["items"][1]
    assert set(first) == {"alarm_id", "type", "severity", "response", "status", "device_ids", "unit_id", "region",
                          "first_seen", "last_seen", "count", "rule", "evidence", "escalation_level", "classification",
                          "raised_at", "dispatched_at", "unit", "devices", "response_times", "parent_id", "children"}
    assert isinstance(first["alarm_id"], str) and first["first_seen"] == "2026-11-22T10:05:00.000Z"

    async def ids(**params: Any) -> list[str]:
        r = await api.http.get("/api/v1/alarms", params=params, headers=ADMIN)
        assert r.status_code == 200, r.text
        return [a["device_ids"][0] for a in r.json()["items"]]

    assert await ids(status="cleared_unack") == ["G1"]
    assert await ids(status="cleared_unack,active_unack", type="gas_leak") == ["H1"]
    assert await ids(response="immediate") == ["H1"]
    assert await ids(region="浙江省") == ["H1"]
    assert await ids(region="江西省/赣州市", device_id="G2") == ["G2"]
    assert await ids(unit_id="GZ", since="2026-11-22T10:03:00Z", until="2026-11-22T10:04:00Z") == ["G4", "G3", "G1"]
    assert await ids(since=str(T0 + 400_000)) == ["H1", "G1"]  # epoch ms too; G1 cleared after it
    r = await api.http.get("/api/v1/alarms", params={"status": "burning"}, headers=ADMIN)
    assert r.status_code == 422
    assert (await api.http.get("/api/v1/alarms")).status_code == 401
    scoped = await api.token("viewer", ["浙江省"])
    r = await api.http.get("/api/v1/alarms", headers=scoped)
    assert [a["device_ids"] for a in r.json()["items"]] == [["H1"]]


async def test_detail_with_timeline_and_scope(api: Api) -> None:
    await api.raise_("G1", T0)
    await api.raise_("G1", T0 + 1_000)
    alarm_id = (await api.http.get("/api/v1/alarms", headers=ADMIN)).json()["items"][0]["alarm_id"]
    r = await api.http.get(f"/api/v1/alarms/{alarm_id}", headers=ADMIN)
    assert r.status_code == 200
    body = r.json()
    assert (body["count"], body["rule"], body["evidence"][0]["device_id"]) == (2, "smoke_rule", "G1")
    assert [(e["action"], e["actor"]) for e in body["timeline"]] == [("raised", "system"), ("repeated", "system")]
    assert body["notifications"] == []
    # v1 attempts recorded before the upgrade stay visible, their webhook credentials masked
    await api.pool.execute(
        "INSERT INTO notification_attempts (alarm_id, level, target, attempt, ok, detail) VALUES ($1, 0,"
        " 'https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=s3cr3t-key', 1, false, 'http 5xx')", int(alarm_id))
    shown = (await api.http.get(f"/api/v1/alarms/{alarm_id}", headers=ADMIN)).json()["notifications"]
    assert [(n["detail"], "s3cr3t" in n["target"], n["target"].startswith("https://qyapi")) for n in shown] == [
        ("http 5xx", False, True)]
    outsider = await api.token("viewer", ["浙江省"])
    assert (await api.http.get(f"/api/v1/alarms/{alarm_id}", headers=outsider)).status_code == 404
    assert (await api.http.get("/api/v1/alarms/999999", headers=ADMIN)).status_code == 404
    assert (await api.http.get("/api/v1/alarms/abc", headers=ADMIN)).status_code == 404


async def test_ack_and_resolve_roles_and_invalid_transitions(api: Api) -> None:
    await api.raise_("G1", T0)
    alarm_id = (await api.http.get("/api/v1/alarms", headers=ADMIN)).json()["items"][0]["alarm_id"]
    viewer, operator = await api.token("viewer"), await api.token("operator")
    outsider = await api.token("operator", ["浙江省"])
    assert (await api.http.post(f"/api/v1/alarms/{alarm_id}/ack", headers=viewer)).status_code == 403
    assert (await api.http.post(f"/api/v1/alarms/{alarm_id}/ack", headers=outsider)).status_code == 404
    api.clock.now = T0 + 15_000
    r = await api.http.post(f"/api/v1/alarms/{alarm_id}/ack", headers=operator)
    assert r.status_code == 200 and r.json()["status"] == "active_ack"
    r = await api.http.post(f"/api/v1/alarms/{alarm_id}/ack", headers=operator)
    assert r.status_code == 409 and "active_ack" in r.json()["detail"]
    r = await api.http.post(f"/api/v1/alarms/{alarm_id}/resolve", json={"classification": "arson"}, headers=operator)
    assert r.status_code == 422
    r = await api.http.post(f"/api/v1/alarms/{alarm_id}/resolve",
                            json={"classification": "false_alarm", "note": "厨房油烟"}, headers=operator)
    assert r.status_code == 200
    assert (r.json()["status"], r.json()["classification"]) == ("resolved", "false_alarm")
    r = await api.http.post(f"/api/v1/alarms/{alarm_id}/resolve", json={"classification": "fire"}, headers=operator)
    assert r.status_code == 409
    timeline = (await api.http.get(f"/api/v1/alarms/{alarm_id}", headers=viewer)).json()["timeline"]
    assert [(e["action"], e["actor"]) for e in timeline] == [("raised", "system"), ("acked", "operator"),
                                                            ("resolved", "operator")]
    assert timeline[1]["at"] == "2026-11-22T10:00:15.000Z"
    assert timeline[2]["detail"]["note"] == "厨房油烟"


# --- streams ----------------------------------------------------------------------------------
@dataclass
class Sse:
    id: str | None
    event: str
    data: dict[str, Any]


async def read_sse(response: httpx.Response, n: int) -> list[Sse]:
    """The next n events of an SSE response (comments and retry lines skipped)."""
    out: list[Sse] = []
    fields: dict[str, str] = {}
    async with asyncio.timeout(10):
        async for line in response.aiter_lines():
            if line == "":
                if "data" in fields:
                    out.append(Sse(fields.get("id"), fields.get("event", "message"), json.loads(fields["data"])))
                    if len(out) == n:
                        return out
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
    return out


@contextlib.asynccontextmanager
async def sse(api: Api, headers: dict[str, str], params: dict[str, str] | None = None) -> AsyncIterator[httpx.Response]:
    async with api.http.stream("GET", "/api/v1/alarms/stream", headers=headers, params=params) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        yield r


async def subscribed(api: Api, n: int) -> None:
    async with asyncio.timeout(5):
        while len(api.service.hub.subscribers) != n:
            await asyncio.sleep(0.01)


async def test_sse_resume_with_last_event_id_gets_exactly_the_missed_events(api: Api) -> None:
    async with sse(api, ADMIN) as stream:
        await subscribed(api, 1)
        for i in range(1, 4):
            await api.raise_(f"G{i}", T0 + i)
        seen = await read_sse(stream, 3)
    assert [(e.event, e.data["device_ids"]) for e in seen] == [("alarm", ["G1"]), ("alarm", ["G2"]), ("alarm", ["G3"])]
    await subscribed(api, 0)  # disconnect unsubscribed
    # while disconnected: more changes than the in-memory buffer holds (4), so the resume reads alarm_events
    await api.raise_("G1", T0 + 10)
    await api.raise_("G4", T0 + 11)
    await api.raise_("H1", T0 + 12, AlarmType.gas_leak)
    await api.raise_("G2", T0 + 13, action="clear")
    await api.raise_("G5", T0 + 14)
    await api.raise_("G3", T0 + 15)
    missed = await api.pool.fetch("SELECT event_id, action FROM alarm_events WHERE event_id > $1 ORDER BY event_id",
                                  int(seen[-1].id or 0))
    assert len(missed) == 6 and api.service.hub.recent[0].event_id > int(seen[-1].id or 0)
    async with sse(api, {**ADMIN, "Last-Event-ID": seen[-1].id or ""}) as stream:
        await subscribed(api, 1)
        await api.raise_("H2", T0 + 20, AlarmType.gas_leak)  # a live one after the resume
        got = await read_sse(stream, 7)
    assert [int(e.id or 0) for e in got[:6]] == [r["event_id"] for r in missed]
    assert [e.data["device_ids"][0] for e in got] == ["G1", "G4", "H1", "G2", "G5", "G3", "H2"]
    assert got[0].data["count"] == 2 and got[3].data["status"] == "cleared_unack"
    ids = [int(e.id or 0) for e in got]
    assert ids == sorted(set(ids))

    # from the buffer this time, with the browser-style query parameters
    token = (await api.token("viewer"))["Authorization"].removeprefix("Bearer ")
    async with sse(api, {}, {"token": token, "last_event_id": got[4].id or ""}) as stream:
        again = await read_sse(stream, 2)
    assert [e.id for e in again] == [got[5].id, got[6].id]


async def test_sse_is_scoped_by_region_and_needs_a_token(api: Api) -> None:
    assert (await api.http.get("/api/v1/alarms/stream")).status_code == 401
    assert (await api.http.get("/api/v1/alarms/stream", params={"token": "nope"})).status_code == 401
    hz = await api.token("viewer", ["浙江省"])
    async with sse(api, hz) as stream:
        await subscribed(api, 1)
        await api.raise_("G1", T0)
        await api.raise_("H1", T0, AlarmType.gas_leak)
        [only] = await read_sse(stream, 1)
    assert only.data["device_ids"] == ["H1"] and only.data["region"] == HANGZHOU


async def test_sse_sends_keep_alive_comments(api: Api) -> None:
    async with sse(api, ADMIN) as stream:
        lines: list[str] = []
        async with asyncio.timeout(5):
            async for line in stream.aiter_lines():
                lines.append(line)
                if line.startswith(": keep-alive"):
                    break
    assert lines[0] == "retry: 2000"


async def test_websocket_with_query_token_and_first_message(api: Api) -> None:
    token = (await api.token("viewer"))["Authorization"].removeprefix("Bearer ")
    ws_base = api.base.replace("http://", "ws://") + "/api/v1/alarms/ws"
    async with websockets.connect(f"{ws_base}?token={token}") as ws:
        await subscribed(api, 1)
        await api.raise_("G1", T0)
        first = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert (first["event"], first["data"]["device_ids"]) == ("alarm", ["G1"])
    await subscribed(api, 0)
    await api.raise_("G2", T0 + 1)
    async with websockets.connect(ws_base) as ws:  # token and resume point in the first message
        await ws.send(json.dumps({"token": token, "last_event_id": first["id"]}))
        resumed = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert resumed["data"]["device_ids"] == ["G2"] and int(resumed["id"]) > int(first["id"])
    async with websockets.connect(ws_base) as ws:
        await ws.send(json.dumps({"token": "wrong"}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(f"{ws_base}?token=wrong"):
            pass

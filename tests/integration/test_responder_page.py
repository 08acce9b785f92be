"""The responder page, dispatch, the alarm object's v2 additions and response statistics
(CONTRACT §5, §9), served by real uvicorn on a real PostgreSQL: tokens (unknown, revoked, expired:
404; 128+ bits; only the hash stored), ack/arrive/feedback once each, the climb held, photos
(413, metadata stripped), headers, dispatch selection and 409, response_times, timeline, stats."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from PIL import Image
from prometheus_client import CollectorRegistry

from alerting.api import router as alarms_router
from alerting.config import RuleConfig
from alerting.core import Correlator
from alerting.lifecycle import AlarmLifecycle
from alerting.metrics import AlarmMetrics
from alerting.model import AlarmType, Decision, Response, Severity
from alerting.response import tokens
from alerting.response.dispatch import router as dispatch_router
from alerting.response.page import PHOTO_MAX_BYTES, Buckets
from alerting.response.page import router as page_router
from alerting.response.photos import router as photos_router
from alerting.response.stats import router as stats_router
from alerting.service import AlarmService
from alerting.stream import AlarmHub, db_replay
from devices.auth import create_token
from devices.fleet import Fleet
from devices.kinds import Kind
from miaoxiang.embedded import free_port
from miaoxiang.migrate import migrate
from miaoxiang.settings import DEFAULT_MIGRATIONS_DIR, Settings
from tests.lifespan_state import with_services

pytestmark = pytest.mark.integration
ADMIN = {"Authorization": "Bearer test-admin-token"}
GANZHOU = "江西省/赣州市/章贡区/南外街道"
UNIT_LOCATION = {"lat": 25.8292, "lon": 114.9336}
CONTACTS = [{"name": "值班室", "phone": "+8679788881234"}]


class Clock:
    def __init__(self) -> None:
        self.now = int(time.time() * 1000)

    def __call__(self) -> int:
        return self.now


@dataclass
class Env:
    http: httpx.AsyncClient
    pool: asyncpg.Pool
    service: AlarmService
    clock: Clock
    buckets: Buckets

    async def raise_(self, device: str = "S1", response: Response = Response.verify,
                     type_: AlarmType = AlarmType.smoke) -> int:
        d = Decision("raise", f"device:{device}", type_, Severity.major, response, "rule", self.clock.now, [device],
                     None, [{"device_id": device, "ts_ms": self.clock.now}])
        await self.service.lifecycle.handle([d])
        return int(await self.pool.fetchval(
            "SELECT alarm_id FROM alarms WHERE alarm_key = $1 ORDER BY alarm_id DESC LIMIT 1", f"device:{device}"))

    async def responder(self, rid: str, role: str, *, phone: str | None = None, regions: list[str] | None = None,
                        unit_ids: list[str] | None = None, location: dict[str, float] | None = None) -> None:
        await self.pool.execute(
            "INSERT INTO responders (responder_id, name, role, phone, regions, unit_ids, location)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)",
            rid, f"name-{rid}", role, phone, regions or [], unit_ids or [],
            None if location is None else json.dumps(location))

    async def link(self, alarm_id: int, rid: str | None = None, group: str | None = None) -> str:
        async with self.pool.acquire() as conn:
            token = await tokens.issue(conn, alarm_id, responder_id=rid, group_channel=group)
        assert token is not None
        return token

    async def token(self, role: str, regions: list[str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {await create_token(self.pool, role, role, regions or [])}"}


@pytest.fixture
async def env(settings: Settings) -> AsyncIterator[Env]:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=6)
    async with pool.acquire() as conn:
        await migrate(conn, DEFAULT_MIGRATIONS_DIR)
        await conn.execute(
            "INSERT INTO units (unit_id, name, address, region, industry, contacts, location)"
            " VALUES ('GZ', '南外小学', '章贡区南外街道 1 号', $1, 'school', $2::jsonb, $3::jsonb),"
            "        ('HZ', '西湖商场', '北山街道 2 号', '浙江省/杭州市/西湖区/北山街道', 'commercial', '[]', NULL)",
            GANZHOU, json.dumps(CONTACTS), json.dumps(UNIT_LOCATION))
        await conn.execute(
            "INSERT INTO devices (device_id, kind, unit_id, location) VALUES"
            " ('S1', 'smoke', 'GZ', '{\"building\": \"教学楼\", \"floor\": \"3F\", \"room\": \"302\"}'),"
            " ('S2', 'smoke', 'GZ', NULL), ('H1', 'gas', 'HZ', NULL)")
    fleet = Fleet()
    fleet.set_unit("GZ", region=GANZHOU)
    fleet.set_unit("HZ", region="浙江省/杭州市/西湖区/北山街道")
    for d, k, u in (("S1", Kind.smoke, "GZ"), ("S2", Kind.smoke, "GZ"), ("H1", Kind.gas, "HZ")):
        fleet.upsert(d, k, unit_id=u)
    clock = Clock()
    metrics = AlarmMetrics(CollectorRegistry())
    hub = AlarmHub(db_replay(pool), buffer_size=64, heartbeat_s=0.2, metrics=metrics)
    lifecycle = AlarmLifecycle(pool, hub, fleet, clock, metrics=metrics)
    service = AlarmService(pool, fleet, Correlator(RuleConfig()), lifecycle, hub, clock)
    app = FastAPI()
    for router in (alarms_router, dispatch_router, stats_router, page_router, photos_router):
        app.include_router(router)
    buckets = Buckets(burst=1000)
    services = SimpleNamespace(admin_token=settings.admin_token, pool=pool, alarms=service, responder_buckets=buckets)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(with_services(app, services), host="127.0.0.1", port=port,
                                           lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            await asyncio.sleep(0.01)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            yield Env(http, pool, service, clock, buckets)
    finally:
        server.should_exit = True
        await task
        await pool.close()


def jpeg_with_exif(size: tuple[int, int] = (64, 48)) -> bytes:
    im = Image.new("RGB", size, (200, 30, 30))
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x0131] = "tracking-software"  # Software
    out = io.BytesIO()
    im.save(out, "JPEG", exif=exif.tobytes(), comment=b"where I was")
    return out.getvalue()


# --- tokens --------------------------------------------------------------------------------
async def test_token_properties_unknown_revoked_expired(env: Env) -> None:
    alarm = await env.raise_()
    await env.responder("ms1", "micro_station")
    token = await env.link(alarm, "ms1")
    assert len(token) >= 22 and len(tokens.token_hash(token)) == 32  # 24 random bytes: 192 bits
    stored = await env.pool.fetch("SELECT * FROM response_tokens")
    assert len(stored) == 1 and bytes(stored[0]["token_hash"]) == hashlib.sha256(token.encode()).digest()
    assert token not in json.dumps([dict(r) for r in stored], default=str)  # the token itself is nowhere
    assert (await env.http.get(f"/r/{token}")).status_code == 200
    assert (await env.http.get("/r/" + "A" * 32)).status_code == 404
    assert (await env.http.post("/r/" + "A" * 32 + "/ack")).status_code == 404
    # a later message to the same person carries a new link; the earlier one keeps working, and
    # what the person does is recorded once, whichever link they use
    newer = await env.link(alarm, "ms1")
    assert newer != token
    assert (await env.http.get(f"/r/{token}")).status_code == 200
    assert (await env.http.get(f"/r/{newer}")).status_code == 200
    assert (await env.http.post(f"/r/{token}/ack")).status_code == 204
    assert (await env.http.post(f"/r/{newer}/ack")).status_code == 204
    assert await env.pool.fetchval("SELECT count(*) FROM responder_actions WHERE action = 'ack'") == 1
    # resolved 23 h ago: still works; 25 h ago: expired
    await env.pool.execute("UPDATE alarms SET status = 'resolved', resolved_at = now() - interval '23 hours'")
    assert (await env.http.get(f"/r/{newer}")).status_code == 200
    await env.pool.execute("UPDATE alarms SET resolved_at = now() - interval '25 hours'")
    assert (await env.http.get(f"/r/{newer}")).status_code == 404
    assert (await env.http.post(f"/r/{newer}/ack")).status_code == 404
    # revoked with its responder
    other = await env.raise_("S2")
    await env.responder("ms2", "micro_station")
    live = await env.link(other, "ms2")
    assert (await env.http.get(f"/r/{live}")).status_code == 200
    await env.pool.execute("SELECT mx_retire_responder('ms2')")
    assert (await env.http.get(f"/r/{live}")).status_code == 404


async def test_page_shows_the_alarm_changes_nothing_and_has_strict_headers(env: Env) -> None:
    alarm = await env.raise_(response=Response.immediate)
    await env.responder("gw1", "grid_worker", phone="+8613900000001")
    token = await env.link(alarm, "gw1")
    before = await env.pool.fetchval("SELECT (SELECT count(*) FROM alarm_events) + (SELECT count(*) FROM "
                                     "responder_actions)")
    r = await env.http.get(f"/r/{token}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["referrer-policy"] == "no-referrer" and r.headers["cache-control"] == "no-store"
    assert r.headers["x-content-type-options"] == "nosniff"
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    page = r.text
    assert "南外小学" in page and "章贡区南外街道 1 号" in page and "教学楼 3F 302" in page
    assert 'href="tel:+8679788881234"' in page  # the unit's duty phone
    assert "+8613900000001" not in page  # never a responder's phone
    assert "烟感报警" in page and "收到 Ack" in page and 'name="name"' not in page  # personal link: no name asked
    assert "http://" not in page and "https://" not in page  # nothing from other origins
    after = await env.pool.fetchval("SELECT (SELECT count(*) FROM alarm_events) + (SELECT count(*) FROM "
                                    "responder_actions)")
    assert after == before
    for asset in ("/r/-/page.css", "/r/-/page.js"):
        a = await env.http.get(asset)
        assert a.status_code == 200 and a.headers["referrer-policy"] == "no-referrer"
    gone = await env.http.get("/r/" + "B" * 32)
    assert gone.status_code == 404 and "链接无效" in gone.text and gone.headers["cache-control"] == "no-store"


# --- actions -------------------------------------------------------------------------------
async def test_ack_arrive_feedback_once_each_hold_the_climb_and_reach_the_timeline(env: Env) -> None:
    alarm = await env.raise_(response=Response.immediate)
    await env.responder("gw1", "grid_worker")
    token = await env.link(alarm, "gw1")
    env.clock.now += 5_000
    r = await env.http.post(f"/r/{token}/ack")
    assert r.status_code == 204 and r.headers["cache-control"] == "no-store"
    row = await env.pool.fetchrow("SELECT status, held_until, created_at FROM alarms WHERE alarm_id = $1", alarm)
    assert row["status"] == "active_unack"  # only an operator's ack changes the status
    held = (row["held_until"] - row["created_at"]).total_seconds()
    assert 300 <= held <= 310  # immediate: the climb held for 300 s
    assert (await env.http.post(f"/r/{token}/ack")).status_code == 204  # a repeat changes nothing
    env.clock.now += 60_000
    r = await env.http.post(f"/r/{token}/arrive", data={"lat": "25.83", "lon": "114.93"})
    assert r.status_code == 204
    assert (await env.http.post(f"/r/{token}/arrive", data={"lat": "1", "lon": "2"})).status_code == 204
    held_until = await env.pool.fetchval("SELECT held_until FROM alarms WHERE alarm_id = $1", alarm)
    assert (held_until - row["created_at"]).days > 365  # an arrival stops the climb for good
    r = await env.http.post(f"/r/{token}/feedback", data={"classification": "false_alarm", "note": "做饭油烟"})
    assert r.status_code == 204
    r = await env.http.post(f"/r/{token}/feedback", data={"classification": "fire"})
    assert r.status_code == 204
    actions = await env.pool.fetch("SELECT action, lat, lon, classification, note FROM responder_actions ORDER BY id")
    assert [(a["action"], a["lat"], a["classification"]) for a in actions] == [
        ("ack", None, None), ("arrive", 25.83, None), ("feedback", None, "false_alarm")]
    a = await env.pool.fetchrow("SELECT status, classification FROM alarms WHERE alarm_id = $1", alarm)
    assert a["status"] == "active_unack" and a["classification"] is None  # feedback never resolves
    detail = (await env.http.get(f"/api/v1/alarms/{alarm}", headers=ADMIN)).json()
    mine = [(e["action"], e["actor"]) for e in detail["timeline"] if e["actor"] == "responder:gw1"]
    assert mine == [("responder_acked", "responder:gw1"), ("arrived", "responder:gw1"), ("feedback", "responder:gw1")]
    proposal = next(e for e in detail["timeline"] if e["action"] == "feedback")["detail"]
    assert proposal["proposed_classification"] == "false_alarm" and proposal["note"] == "做饭油烟"
    assert proposal["photo_url"] is None
    times = detail["response_times"]
    assert times["acked_s"] == pytest.approx(5.0, abs=0.01) and times["arrived_s"] == pytest.approx(65.0, abs=0.01)
    assert times["notified_s"] is None and times["resolved_s"] is None
    # the audit rows reached the stream (ids in alarm_events, published by the hub)
    assert await env.pool.fetchval("SELECT count(*) FROM alarm_events WHERE actor = 'responder:gw1'") == 3


async def test_responder_actions_and_dispatch_reach_the_stream(env: Env) -> None:
    alarm = await env.raise_()
    raised = await env.pool.fetchval("SELECT max(event_id) FROM alarm_events")
    await env.responder("gw1", "grid_worker")
    token = await env.link(alarm, "gw1")
    assert (await env.http.post(f"/r/{token}/ack")).status_code == 204
    assert (await env.http.post(f"/api/v1/alarms/{alarm}/dispatch", headers=ADMIN)).status_code == 200
    written = await env.pool.fetch("SELECT event_id, action FROM alarm_events WHERE event_id > $1 ORDER BY event_id",
                                   raised)
    assert [w["action"] for w in written] == ["responder_acked", "dispatched"]
    headers = {**ADMIN, "Last-Event-ID": str(raised)}
    async with env.http.stream("GET", "/api/v1/alarms/stream", headers=headers) as r:
        assert r.status_code == 200
        seen: list[tuple[str, dict[str, Any]]] = []
        event_id = ""
        async with asyncio.timeout(10):
            async for line in r.aiter_lines():
                if line.startswith("id:"):
                    event_id = line[3:].strip()
                elif line.startswith("data:"):
                    seen.append((event_id, json.loads(line[5:])))
                    if len(seen) == 2:
                        break
    assert [int(i) for i, _ in seen] == [w["event_id"] for w in written]
    assert seen[0][1]["dispatched_at"] is None and seen[1][1]["dispatched_at"] is not None


async def test_verify_ack_stops_the_climb_and_form_posts_redirect(env: Env) -> None:
    alarm = await env.raise_(response=Response.verify)
    await env.responder("uc1", "unit_contact")
    token = await env.link(alarm, "uc1")
    r = await env.http.post(f"/r/{token}/ack", data={}, headers={"Accept": "text/html,application/xhtml+xml"})
    assert r.status_code == 303 and r.headers["location"] == f"/r/{token}"
    row = await env.pool.fetchrow("SELECT held_until, created_at FROM alarms WHERE alarm_id = $1", alarm)
    assert (row["held_until"] - row["created_at"]).days > 365
    page = (await env.http.get(f"/r/{token}")).text
    assert "已收到 ✓" in page and "name-uc1 已收到" in page


async def test_group_channel_link_asks_the_name(env: Env) -> None:
    alarm = await env.raise_()
    await env.pool.execute("INSERT INTO channels (name, type, config) VALUES ('duty-room', 'wecom_robot', "
                           "'{\"url\": \"https://example.invalid/x?key=k\"}')")
    token = await env.link(alarm, group="duty-room")
    assert 'name="name"' in (await env.http.get(f"/r/{token}")).text
    r = await env.http.post(f"/r/{token}/ack", data={})
    assert r.status_code == 422 and "姓名" in r.json()["detail"]
    assert (await env.http.post(f"/r/{token}/ack", data={"name": "张三"})).status_code == 204
    for bad in ({"name": "李四", "lat": 25.8}, {"name": "李四", "lat": "north", "lon": 1},
                {"name": "李四", "lat": 91, "lon": 0}, {"name": "x" * 65}):
        assert (await env.http.post(f"/r/{token}/arrive", json=bad)).status_code == 422, bad
    r = await env.http.post(f"/r/{token}/arrive", json={"name": "李四", "lat": 25.83, "lon": 114.93})
    assert r.status_code == 204
    assert await env.pool.fetchval("SELECT person FROM responder_actions WHERE action = 'arrive'") == "李四"
    actor = await env.pool.fetchval("SELECT actor FROM alarm_events WHERE action = 'responder_acked'")
    assert actor == "group:duty-room:张三"
    assert await env.pool.fetchval("SELECT person FROM responder_actions WHERE action = 'ack'") == "张三"
    await env.pool.execute("DELETE FROM channels WHERE name = 'duty-room'")
    assert (await env.http.get(f"/r/{token}")).status_code == 404  # dies with its channel


async def test_feedback_photo_stripped_limits_and_bad_input(env: Env) -> None:
    alarm = await env.raise_()
    await env.responder("gw1", "grid_worker")
    token = await env.link(alarm, "gw1")
    original = jpeg_with_exif()
    assert b"SecretCam" in original and b"where I was" in original
    big = b"\xff\xd8" + b"\0" * (PHOTO_MAX_BYTES + 10)
    r = await env.http.post(f"/r/{token}/feedback", data={"classification": "fire"},
                            files={"photo": ("big.jpg", big, "image/jpeg")})
    assert r.status_code == 413
    r = await env.http.post(f"/r/{token}/feedback", data={"classification": "burning"})
    assert r.status_code == 422
    r = await env.http.post(f"/r/{token}/feedback", data={"classification": "fire", "note": "x" * 501})
    assert r.status_code == 422
    r = await env.http.post(f"/r/{token}/feedback", data={"classification": "fire"},
                            files={"photo": ("a.gif", b"GIF89a" + b"\0" * 30, "image/gif")})
    assert r.status_code == 415
    assert await env.pool.fetchval("SELECT count(*) FROM responder_actions") == 0  # refusals record nothing
    r = await env.http.post(f"/r/{token}/feedback", data={"classification": "fire", "note": "三楼冒烟"},
                            files={"photo": ("p.jpg", original, "image/jpeg")})
    assert r.status_code == 204, r.text
    photo, kind = await env.pool.fetchrow("SELECT photo, photo_type FROM responder_actions")
    assert kind == "image/jpeg" and b"SecretCam" not in photo and b"where I was" not in photo
    with Image.open(io.BytesIO(photo)) as im:
        assert im.size == (64, 48) and not im.getexif() and "exif" not in im.info and "comment" not in im.info
    detail = (await env.http.get(f"/api/v1/alarms/{alarm}", headers=ADMIN)).json()
    url = next(e for e in detail["timeline"] if e["action"] == "feedback")["detail"]["photo_url"]
    shown = await env.http.get(url, headers=ADMIN)
    assert shown.status_code == 200 and shown.headers["content-type"] == "image/jpeg" and shown.content == photo
    elsewhere = await env.token("viewer", ["浙江省"])
    assert (await env.http.get(url, headers=elsewhere)).status_code == 404
    assert (await env.http.get(f"/api/v1/alarms/{alarm}/photos/999", headers=ADMIN)).status_code == 404


async def test_body_over_the_cap_is_refused_before_reading(env: Env) -> None:
    alarm = await env.raise_()
    await env.responder("gw1", "grid_worker")
    token = await env.link(alarm, "gw1")

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(200):
            yield b"\0" * 65536  # 12.5 MiB without a Content-Length

    r = await env.http.post(f"/r/{token}/feedback", content=endless(),
                            headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413
    # a declared length over the cap: refused before any of the body is sent
    host, port = env.http.base_url.host, env.http.base_url.port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"POST /r/{token}/feedback HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; "
                 f"boundary=x\r\nContent-Length: {20 * 1024 * 1024}\r\n\r\n".encode())
    await writer.drain()
    async with asyncio.timeout(5):
        status = await reader.readline()
    writer.close()
    assert status.split()[1] == b"413"


async def test_rate_limited_per_client_address(env: Env) -> None:
    env.buckets.burst, env.buckets.per_s = 3, 0.001
    env.buckets._level.clear()
    codes = [(await env.http.get("/r/" + "C" * 32)).status_code for _ in range(5)]
    assert codes[:3] == [404, 404, 404] and codes[3:] == [429, 429]
    r = await env.http.get("/r/" + "C" * 32)
    assert int(r.headers["retry-after"]) >= 1 and r.headers["cache-control"] == "no-store"


# --- dispatch ------------------------------------------------------------------------------
async def test_dispatch_nearest_three_stations_and_longest_prefix_brigade(env: Env) -> None:
    alarm = await env.raise_()
    lat, lon = UNIT_LOCATION["lat"], UNIT_LOCATION["lon"]
    for rid, d in (("ms-far", 0.5), ("ms-1", 0.01), ("ms-2", 0.02), ("ms-3", 0.03), ("ms-4", 0.04)):
        await env.responder(rid, "micro_station", location={"lat": lat + d, "lon": lon})
    await env.pool.execute("UPDATE responders SET on_duty = '[]' WHERE responder_id = 'ms-1'")  # never on duty
    await env.responder("fb-province", "fire_brigade", regions=["江西省"])
    await env.responder("fb-city", "fire_brigade", regions=["江西省/赣州市"])
    await env.responder("fb-other", "fire_brigade", regions=["浙江省"])
    viewer = await env.token("viewer")
    assert (await env.http.post(f"/api/v1/alarms/{alarm}/dispatch", headers=viewer)).status_code == 403
    r = await env.http.post(f"/api/v1/alarms/{alarm}/dispatch", json={"note": "确认起火"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["dispatched_at"] is not None and body["status"] == "active_unack"
    told = await env.pool.fetch("SELECT responder_id, level, reason, event_id FROM notifications ORDER BY id")
    assert [(n["responder_id"], n["level"]) for n in told] == [("ms-2", 2), ("ms-3", 2), ("ms-4", 2), ("fb-city", 3)]
    assert {n["reason"] for n in told} == {"dispatch"} and all(n["event_id"] for n in told)
    by = await env.pool.fetchval("SELECT dispatched_by FROM alarms WHERE alarm_id = $1", alarm)
    assert by == "admin"
    again = await env.http.post(f"/api/v1/alarms/{alarm}/dispatch", headers=ADMIN)
    assert again.status_code == 200 and again.json()["dispatched_at"] == body["dispatched_at"]
    assert await env.pool.fetchval("SELECT count(*) FROM notifications") == 4  # nothing new
    assert await env.pool.fetchval("SELECT count(*) FROM alarm_events WHERE action = 'dispatched'") == 1
    assert (await env.http.post(f"/api/v1/alarms/{alarm}/ack", headers=ADMIN)).status_code == 200
    assert await env.pool.fetchval("SELECT dispatched_at IS NOT NULL FROM alarms WHERE alarm_id = $1", alarm)
    await env.http.post(f"/api/v1/alarms/{alarm}/resolve", json={"classification": "fire"}, headers=ADMIN)
    other = await env.raise_("S2")
    await env.http.post(f"/api/v1/alarms/{other}/resolve", json={"classification": "test"}, headers=ADMIN)
    r = await env.http.post(f"/api/v1/alarms/{other}/dispatch", headers=ADMIN)
    assert r.status_code == 409
    assert (await env.http.post("/api/v1/alarms/999999/dispatch", headers=ADMIN)).status_code == 404
    scoped = await env.token("operator", ["浙江省"])
    third = await env.raise_("S1", type_=AlarmType.fire)
    assert (await env.http.post(f"/api/v1/alarms/{third}/dispatch", headers=scoped)).status_code == 404


async def test_dispatch_without_locations_takes_stations_scoped_to_the_unit(env: Env) -> None:
    alarm = await env.raise_("H1", type_=AlarmType.gas_leak)  # unit HZ has no location
    await env.responder("ms-hz", "micro_station", unit_ids=["HZ"])
    await env.responder("ms-gz", "micro_station", unit_ids=["GZ"])
    await env.responder("ms-far", "micro_station", location={"lat": 30.0, "lon": 120.0})
    r = await env.http.post(f"/api/v1/alarms/{alarm}/dispatch", headers=ADMIN)
    assert r.status_code == 200
    assert [n["responder_id"] for n in await env.pool.fetch("SELECT responder_id FROM notifications")] == ["ms-hz"]


# --- alarm object additions and statistics ---------------------------------------------------
async def test_alarm_object_additions_and_phones_only_for_operators(env: Env) -> None:
    alarm = await env.raise_()
    await env.responder("uc1", "unit_contact")
    await env.pool.execute(
        "INSERT INTO notifications (alarm_id, level, reason, responder_id, state, sent_at)"
        " SELECT $1, 0, 'level', 'uc1', 'sent', created_at + interval '2 seconds' FROM alarms WHERE alarm_id = $1",
        alarm)
    env.clock.now += 30_000
    await env.http.post(f"/api/v1/alarms/{alarm}/ack", headers=ADMIN)
    env.clock.now += 90_000
    await env.http.post(f"/api/v1/alarms/{alarm}/resolve", json={"classification": "false_alarm"}, headers=ADMIN)
    items = (await env.http.get("/api/v1/alarms", headers=ADMIN)).json()["items"]
    a = items[0]
    assert a["raised_at"] is not None and a["dispatched_at"] is None
    assert a["unit"] == {"unit_id": "GZ", "name": "南外小学", "address": "章贡区南外街道 1 号", "region": GANZHOU,
                         "industry": "school", "contacts": CONTACTS, "location": UNIT_LOCATION}
    assert a["devices"] == [{"device_id": "S1", "kind": "smoke",
                             "location": {"building": "教学楼", "floor": "3F", "room": "302"}}]
    assert a["response_times"] == {"notified_s": 2.0, "acked_s": 30.0, "arrived_s": None, "resolved_s": 120.0}
    viewer = await env.token("viewer")
    seen = (await env.http.get(f"/api/v1/alarms/{alarm}", headers=viewer)).json()
    assert seen["unit"]["contacts"] == [{"name": "值班室"}]  # no phone for a viewer
    actions = [e["action"] for e in seen["timeline"]]
    assert actions[0] == "raised" and "notified" in actions and actions[-1] == "resolved"
    notified = next(e for e in seen["timeline"] if e["action"] == "notified")
    assert notified["detail"]["recipient"] == "responder:uc1" and notified["at"]


async def test_response_stats_by_region_and_industry_within_scope(env: Env) -> None:
    ids = []
    for device in ("S1", "S2", "H1"):
        ids.append(await env.raise_(device, type_=AlarmType.gas_leak if device == "H1" else AlarmType.smoke))
    for alarm_id, seconds in zip(ids, (10, 30, 50), strict=True):
        await env.pool.execute("UPDATE alarms SET acked_at = created_at + make_interval(secs => $2)"
                               " WHERE alarm_id = $1", alarm_id, seconds)
    r = await env.http.get("/api/v1/stats/response", params={"by": "industry"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    by = {i["industry"]: i for i in r.json()["items"]}
    assert by["school"]["alarms"] == 2 and by["school"]["acked_s"]["median"] == pytest.approx(20.0)
    assert by["school"]["acked_s"]["p90"] == pytest.approx(28.0) and by["school"]["arrived_s"]["median"] is None
    assert by["commercial"]["acked_s"]["median"] == pytest.approx(50.0)
    r = await env.http.get("/api/v1/stats/response", params={"by": "region", "depth": 1}, headers=ADMIN)
    assert {i["region"]: i["alarms"] for i in r.json()["items"]} == {"江西省": 2, "浙江省": 1}
    scoped = await env.token("viewer", ["浙江省"])
    r = await env.http.get("/api/v1/stats/response", params={"by": "region"}, headers=scoped)
    assert [i["region"] for i in r.json()["items"]] == ["浙江省/杭州市/西湖区/北山街道"]
    backwards = {"from": "2020-01-02T00:00:00Z", "to": "2020-01-01T00:00:00Z"}
    r = await env.http.get("/api/v1/stats/response", params=backwards, headers=ADMIN)
    assert r.status_code == 422
    r = await env.http.get("/api/v1/stats/response", params={"to": "2020-01-01T00:00:00Z"}, headers=ADMIN)
    assert r.json()["items"] == []



async def _held(env: Env, alarm: int) -> Any:
    return await env.pool.fetchval("SELECT held_until - now() FROM alarms WHERE alarm_id = $1", alarm)


async def test_an_ack_hold_ends_when_the_alarm_reopens_or_is_capped_when_it_becomes_immediate(env: Env) -> None:
    """A responder's ack on a verify alarm holds its climb for good, but only for that episode: when
    the alarm reopens the wait for an answer starts again, and when it becomes immediate the hold
    is at most 300 s, as for an ack of an immediate alarm (CONTRACT §9)."""
    await env.responder("uc1", "unit_contact", unit_ids=["GZ"])
    alarm = await env.raise_()
    assert (await env.http.post(f"/r/{await env.link(alarm, 'uc1')}/ack")).status_code == 204
    assert (await _held(env, alarm)).days > 300  # verify: held for good
    env.clock.now += 1000
    await env.service.lifecycle.handle([Decision(
        "clear", "device:S1", AlarmType.smoke, Severity.major, Response.verify, "rule", env.clock.now, ["S1"], None,
        [])])
    env.clock.now += 1000
    assert await env.raise_() == alarm  # reopened: the same alarm, active and unacknowledged again
    assert await env.pool.fetchval("SELECT status FROM alarms WHERE alarm_id = $1", alarm) == "active_unack"
    assert await _held(env, alarm) is None

    second = await env.raise_("S2")
    assert (await env.http.post(f"/r/{await env.link(second, 'uc1')}/ack")).status_code == 204
    env.clock.now += 1000
    assert await env.raise_("S2", response=Response.immediate) == second  # upgraded in place
    assert await env.pool.fetchval("SELECT response FROM alarms WHERE alarm_id = $1", second) == "immediate"
    held = await _held(env, second)
    assert held is not None and held.total_seconds() <= 300 + 5

    third = await env.raise_("H1")
    await env.responder("ms9", "micro_station")
    link = await env.link(third, "ms9")
    assert (await env.http.post(f"{'/r/' + link}/ack")).status_code == 204
    assert (await env.http.post(f"/r/{link}/arrive")).status_code == 204  # on site: held for good
    env.clock.now += 1000
    await env.raise_("H1", response=Response.immediate)
    assert (await _held(env, third)).days > 300

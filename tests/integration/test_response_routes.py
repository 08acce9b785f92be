"""Responders and channels routes (CONTRACT §9) on real uvicorn and PostgreSQL: admin only,
validation (E.164, existing channels, scope paths, on-duty windows, lat/lon), secrets masked,
outbound targets refused naming the address, 409s, deletes that keep history and revoke tokens;
`GET /api/v1/alarms/{id}/notifications` with phones only for operators and admins."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import SimpleNamespace

import asyncpg
import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from alerting.response.channels.store import router as channels_router
from alerting.response.notifications_api import router as notifications_router
from alerting.response.responders import router as responders_router
from devices.auth import create_token
from devices.outbound import OutboundPolicy
from miaoxiang.embedded import free_port
from miaoxiang.migrate import migrate
from miaoxiang.settings import DEFAULT_MIGRATIONS_DIR, Settings
from tests.lifespan_state import with_services

pytestmark = pytest.mark.integration
ADMIN = {"Authorization": "Bearer test-admin-token"}
WECOM = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=0f1e2d3c-secret-key"
REGION = "江西省/赣州市/章贡区/南外街道"


@dataclass
class Api:
    http: httpx.AsyncClient
    pool: asyncpg.Pool

    async def token(self, role: str, regions: list[str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {await create_token(self.pool, role, role, regions or [])}"}


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=4)
    async with pool.acquire() as conn:
        await migrate(conn, DEFAULT_MIGRATIONS_DIR)
    app = FastAPI()
    for r in (channels_router, responders_router, notifications_router):
        app.include_router(r)
    # the public addresses of the providers resolve in tests too: only literal addresses are used here
    services = SimpleNamespace(admin_token=settings.admin_token, pool=pool, outbound=OutboundPolicy.parse([]))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(with_services(app, services), host="127.0.0.1", port=port,
                                          lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            await asyncio.sleep(0.01)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            yield Api(http, pool)
    finally:
        server.should_exit = True
        await task
        await pool.close()


async def test_channels_are_admin_only_masked_and_checked(api: Api) -> None:
    hook = {"name": "hook", "type": "webhook",
            "config": {"url": "https://8.8.8.8/hook?access_token=abc", "secret": "s3"}}
    r = await api.http.post("/api/v1/channels", json=hook, headers=await api.token("operator"))
    assert r.status_code == 403
    r = await api.http.post("/api/v1/channels", json=hook, headers=ADMIN)
    assert r.status_code == 201, r.text
    shown = r.json()
    assert shown["config"]["secret"] != "s3" and "abc" not in shown["config"]["url"]
    assert (await api.http.post("/api/v1/channels", json=hook, headers=ADMIN)).status_code == 409
    # an internal address is refused at creation, naming it
    bad = {"name": "inner", "type": "webhook", "config": {"url": "http://10.1.2.3/x", "secret": "s"}}
    r = await api.http.post("/api/v1/channels", json=bad, headers=ADMIN)
    assert r.status_code == 422 and "10.1.2.3" in r.text
    r = await api.http.post("/api/v1/channels", json={**bad, "endpoint": "http://169.254.169.254/"}, headers=ADMIN)
    assert r.status_code == 422
    r = await api.http.post("/api/v1/channels", json={"name": "x", "type": "pager", "config": {}}, headers=ADMIN)
    assert r.status_code == 422
    r = await api.http.post("/api/v1/channels", json={"name": "sms", "type": "aliyun_sms", "config": {}},
                            headers=ADMIN)
    assert r.status_code == 422
    r = await api.http.get("/api/v1/channels", headers=ADMIN)
    assert [c["name"] for c in r.json()["items"]] == ["hook"]
    assert "s3" not in r.text and "access_token=abc" not in r.text
    r = await api.http.put("/api/v1/channels/hook", json={"config": {"url": "https://8.8.4.4/h", "secret": "new"}},
                           headers=ADMIN)
    assert r.status_code == 200 and r.json()["config"]["url"] == "https://8.8.4.4/h"
    stored = await api.pool.fetchval("SELECT config ->> 'secret' FROM channels WHERE name = 'hook'")
    assert stored == "new"
    assert (await api.http.put("/api/v1/channels/none", json={"config": {}}, headers=ADMIN)).status_code == 404


async def test_responders_validate_and_a_listed_channel_cannot_be_deleted(api: Api) -> None:
    await api.http.post("/api/v1/channels", json={"name": "hook", "type": "webhook",
                                                  "config": {"url": "https://8.8.8.8/h", "secret": "s"}}, headers=ADMIN)
    good = {"responder_id": "zhang", "name": "张三", "role": "grid_worker", "phone": "+8613800000000",
            "channels": ["hook"], "regions": [REGION + "/"], "location": {"lat": 25.85, "lon": 114.93},
            "on_duty": [{"weekday": 1, "start": "22:00", "end": "06:00"}]}
    r = await api.http.post("/api/v1/responders", json=good, headers=await api.token("operator"))
    assert r.status_code == 403
    r = await api.http.post("/api/v1/responders", json=good, headers=ADMIN)
    assert r.status_code == 201, r.text
    assert r.json()["regions"] == [REGION] and r.json()["on_duty"][0]["start"] == "22:00"
    assert (await api.http.post("/api/v1/responders", json=good, headers=ADMIN)).status_code == 409
    for bad in ({"phone": "13800000000"}, {"channels": ["nope"]}, {"channels": []}, {"regions": ["江西省//赣州市"]},
                {"location": {"lat": 91, "lon": 0}}, {"location": {"lat": 0, "lon": 181}},
                {"on_duty": [{"weekday": 8, "start": "08:00", "end": "09:00"}]},
                {"on_duty": [{"weekday": 1, "start": "24:00", "end": "09:00"}]}, {"role": "boss"},
                {"email": "not-an-address"}):
        r = await api.http.post("/api/v1/responders", json={**good, "responder_id": "li", **bad}, headers=ADMIN)
        assert r.status_code == 422, (bad, r.text)
    r = await api.http.post("/api/v1/responders", json={**good, "responder_id": "li", "channels": ["nope"]},
                            headers=ADMIN)
    assert "nope" in r.text
    r = await api.http.patch("/api/v1/responders/zhang", json={"phone": "+8613900000000", "on_duty": None},
                             headers=ADMIN)
    assert r.status_code == 200 and r.json()["phone"] == "+8613900000000" and r.json()["on_duty"] is None
    assert r.json()["name"] == "张三"
    assert (await api.http.patch("/api/v1/responders/zhang", json={"phone": "139"}, headers=ADMIN)).status_code == 422
    r = await api.http.get("/api/v1/responders", params={"region": REGION + "/门牌", "role": "grid_worker"},
                           headers=ADMIN)
    assert [x["responder_id"] for x in r.json()["items"]] == ["zhang"]
    r = await api.http.delete("/api/v1/channels/hook", headers=ADMIN)
    assert r.status_code == 409 and "zhang" in r.text
    # deleting the responder keeps its row, revokes its tokens; then the channel may go
    alarm = await api.pool.fetchval(
        """INSERT INTO alarms (alarm_key, type, severity, response, status, device_ids, region, first_seen,
                               last_seen, rule, escalated_at, active_since)
           VALUES ('device:D1', 'smoke', 'major', 'verify', 'active_unack', '{D1}', $1, now(), now(), 'r', now(), now())
           RETURNING alarm_id""", REGION)
    await api.pool.execute(
        "INSERT INTO response_tokens (token_hash, alarm_id, responder_id) VALUES ('\\x01', $1, 'zhang')", alarm)
    assert (await api.http.delete("/api/v1/responders/zhang", headers=ADMIN)).status_code == 204
    assert await api.pool.fetchval("SELECT revoked_at IS NOT NULL FROM response_tokens") is True
    assert await api.pool.fetchval("SELECT deleted_at IS NOT NULL FROM responders WHERE responder_id = 'zhang'")
    assert (await api.http.delete("/api/v1/responders/zhang", headers=ADMIN)).status_code == 404
    assert (await api.http.delete("/api/v1/channels/hook", headers=ADMIN)).status_code == 204
    assert (await api.http.get("/api/v1/channels", headers=ADMIN)).json()["items"] == []


async def test_alarm_notifications_show_phones_only_to_operators(api: Api) -> None:
    await api.pool.execute("""INSERT INTO channels (name, type, config)
                              VALUES ('hook', 'webhook', '{"url": "https://8.8.8.8/", "secret": "s"}')""")
    await api.pool.execute("""INSERT INTO responders (responder_id, name, role, phone, channels)
                              VALUES ('wang', '王五', 'unit_contact', '+8613800000001', '{hook}')""")
    alarm = await api.pool.fetchval(
        """INSERT INTO alarms (alarm_key, type, severity, response, status, device_ids, region, first_seen,
                               last_seen, rule, escalated_at, active_since)
           VALUES ('device:D1', 'smoke', 'major', 'verify', 'active_unack', '{D1}', $1, now(), now(), 'r', now(), now())
           RETURNING alarm_id""", REGION)
    n = await api.pool.fetchval("""INSERT INTO notifications (alarm_id, level, reason, responder_id, state, channel)
                                   VALUES ($1, 0, 'level', 'wang', 'failed', 'hook') RETURNING id""", alarm)
    await api.pool.execute("""INSERT INTO notification_sends (notification_id, channel, attempt, ok, error_class)
                              VALUES ($1, 'hook', 1, false, 'http 5xx')""", n)
    r = await api.http.get(f"/api/v1/alarms/{alarm}/notifications", headers=await api.token("viewer"))
    assert r.status_code == 200
    [item] = r.json()["items"]
    assert item["responder"] == {"responder_id": "wang", "name": "王五", "role": "unit_contact"}
    assert (item["state"], item["channel"], item["level"], item["sends"][0]["error_class"]) == (
        "failed", "hook", 0, "http 5xx")
    r = await api.http.get(f"/api/v1/alarms/{alarm}/notifications", headers=await api.token("operator"))
    assert r.json()["items"][0]["responder"]["phone"] == "+8613800000001"
    r = await api.http.get(f"/api/v1/alarms/{alarm}/notifications", headers=await api.token("viewer", ["浙江省"]))
    assert r.status_code == 404
    assert (await api.http.get("/api/v1/alarms/x1/notifications", headers=ADMIN)).status_code == 404

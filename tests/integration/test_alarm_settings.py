"""The real service: escalation contacts configured by an admin reach the notifier, and an
operator clears a detector's flapping mark (audited, durable across a restart)."""

from __future__ import annotations

import json
import time

import aiomqtt
import asyncpg
import pytest

from devices.auth import create_token
from miaoxiang.settings import Settings
from tests.service import RunningService, running_service, wait_for

pytestmark = pytest.mark.integration
REGION = "江西省/赣州市/章贡区/南外街道"
DEVICE = "868120305550001"


async def token(settings: Settings, role: str, regions: list[str] | None = None) -> dict[str, str]:
    conn = await asyncpg.connect(settings.database_url)
    try:
        return {"Authorization": f"Bearer {await create_token(conn, role, role, regions or [])}"}  # type: ignore[arg-type]
    finally:
        await conn.close()


async def register(svc: RunningService) -> None:
    r = await svc.http.post("/api/v1/units", headers=svc.auth(), json={
        "unit_id": "U1", "name": "章贡区某商场", "region": REGION,
        "contacts": [{"name": "值班室", "phone": "0797-1234567", "webhook": "http://127.0.0.1:9/unit-desk"}]})
    assert r.status_code in (200, 201), r.text
    r = await svc.http.post(
        "/api/v1/devices", headers=svc.auth(), json={"device_id": DEVICE, "kind": "smoke", "unit_id": "U1"}
    )
    assert r.status_code in (200, 201), r.text


async def test_admin_configures_escalation_contacts_per_region_and_level(settings: Settings) -> None:
    async with running_service(settings) as svc:
        await register(svc)
        operator = await token(settings, "operator")
        body = {"region": "江西省/赣州市", "level": 1, "name": "网格员", "webhook": "http://127.0.0.1:9/grid"}
        assert (await svc.http.post("/api/v1/escalation-contacts", json=body, headers=operator)).status_code == 403
        r = await svc.http.post("/api/v1/escalation-contacts", json=body, headers=svc.auth())
        assert r.status_code == 201, r.text
        assert r.json()["level_name"] == "grid_worker" and r.json()["updated_by"] == "admin"
        r = await svc.http.post("/api/v1/escalation-contacts", headers=svc.auth(),
                                json={**body, "webhook": "http://127.0.0.1:9/grid-2"})  # same key: replaced
        assert r.json()["webhook"] == "http://127.0.0.1:9/grid-2"
        for bad in ({**body, "level": 4}, {**body, "webhook": "not a url"}, {**body, "name": ""}):
            assert (await svc.http.post("/api/v1/escalation-contacts", json=bad, headers=svc.auth())).status_code == 422
        await svc.http.post("/api/v1/escalation-contacts", headers=svc.auth(),
                            json={"level": 3, "name": "119", "webhook": "https://127.0.0.1:9/dispatch"})
        await svc.http.post("/api/v1/escalation-contacts", headers=svc.auth(),
                            json={"region": "浙江省", "level": 1, "name": "other", "webhook": "http://127.0.0.1:9/o"})
        r = await svc.http.get("/api/v1/escalation-contacts", params={"region": "江西省"}, headers=svc.auth())
        assert [(c["region"], c["level"], c["webhook"]) for c in r.json()["items"]] == [
            ("江西省/赣州市", 1, "http://127.0.0.1:9/grid-2")]
        page = (await svc.http.get("/api/v1/escalation-contacts", params={"limit": 2}, headers=svc.auth())).json()
        rest = (await svc.http.get("/api/v1/escalation-contacts", params={"limit": 2, "cursor": page["next_cursor"]},
                                   headers=svc.auth())).json()
        assert [c["name"] for c in page["items"] + rest["items"]] == ["119", "网格员", "other"] and rest[
            "next_cursor"
        ] is None
        # what the notifier will use (CONTRACT §9): each contact is a responder of its level's role scoped
        # to its region, the unit's own webhook contact a unit_contact of the unit, each with a webhook channel
        pool: asyncpg.Pool = svc.app.state.services.pool
        told = """SELECT r.role, r.regions, r.unit_ids, c.config ->> 'url' AS url FROM responders r
                    JOIN channels c ON c.name = r.channels[1] WHERE r.deleted_at IS NULL"""
        assert {(r["role"], *r["regions"], *r["unit_ids"], r["url"]) for r in await pool.fetch(told)} == {
            ("grid_worker", "浙江省", "http://127.0.0.1:9/o"), ("unit_contact", "U1", "http://127.0.0.1:9/unit-desk"),
            ("fire_brigade", "https://127.0.0.1:9/dispatch"), ("grid_worker", "江西省/赣州市", "http://127.0.0.1:9/grid-2")}
        r = await svc.http.delete(
            "/api/v1/escalation-contacts", params={"region": "浙江省", "level": 1, "name": "other"}, headers=svc.auth()
        )
        assert r.status_code == 204
        assert len(await pool.fetch(told)) == 3  # its responder retired
        r = await svc.http.delete(
            "/api/v1/escalation-contacts", params={"region": "浙江省", "level": 1, "name": "other"}, headers=svc.auth()
        )
        assert r.status_code == 404


async def flap(settings: Settings, cycles: int) -> None:
    host, port = (settings.mqtt_url or "").removeprefix("mqtt://").split(":")
    topic = settings.topic("evt", "smoke", DEVICE)
    t = int(time.time() * 1000) - 600_000
    async with aiomqtt.Client(host, int(port)) as pub:
        for i in range(cycles):
            for k, event in enumerate(("alarm", "alarm_clear")):
                report = {
                    "ts": t + i * 60_000 + k * 30_000,
                    "seq": 2 * i + k + 1,
                    "event": event,
                    "data": {"temperature_c": 25},
                }
                await pub.publish(topic, json.dumps(report), qos=1)


async def flags(svc: RunningService) -> list[str]:
    r = await svc.http.get(f"/api/v1/devices/{DEVICE}", headers=svc.auth())
    assert r.status_code == 200, r.text
    return r.json()["flags"]


async def test_operator_clears_the_flapping_mark_and_it_stays_cleared_after_a_restart(settings: Settings) -> None:
    async with running_service(settings) as svc:
        await register(svc)
        await flap(settings, 3)
        await wait_for(lambda: _flapping(svc))
        assert "flapping" in await flags(svc)
        await svc.app.state.services.devices.checkpoint()  # the mark is in the saved state too
        viewer, operator = await token(settings, "viewer"), await token(settings, "operator")
        outsider = await token(settings, "operator", ["浙江省"])
        path = f"/api/v1/devices/{DEVICE}/flapping/clear"
        assert (await svc.http.post(path, headers=viewer)).status_code == 403
        assert (await svc.http.post(path, headers=outsider)).status_code == 403
        assert (await svc.http.post("/api/v1/devices/nope/flapping/clear", headers=operator)).status_code == 404
        r = await svc.http.post(path, headers=operator, json={"note": "探测器已清洁"})
        assert r.status_code == 200, r.text
        assert r.json() == {"device_id": DEVICE, "flapping": False, "cleared": True, "by": "operator"}
        assert "flapping" not in await flags(svc)
        assert (await svc.http.post(path, headers=operator)).json()["cleared"] is False
        pool: asyncpg.Pool = svc.app.state.services.pool
        saved = await pool.fetchval("SELECT flags FROM device_state WHERE device_id = $1", DEVICE)
        assert saved & (1 << 9) == 0  # durable before any checkpoint: a crash now keeps it cleared
        audit = await pool.fetch("SELECT action, actor, detail FROM device_audit WHERE device_id = $1", DEVICE)
        assert [(a["action"], a["actor"], json.loads(a["detail"])) for a in audit] == [
            ("flapping_cleared", "operator", {"note": "探测器已清洁"})]
        # one more alarm/clear cycle does not mark it again: it needs three new ones
        await flap(settings, 1)
        await wait_for(lambda: _readings(pool, 8))
        assert "flapping" not in await flags(svc)
    async with running_service(settings) as svc:
        assert "flapping" not in await flags(svc)


async def _flapping(svc: RunningService) -> bool:
    return "flapping" in await flags(svc)


async def _readings(pool: asyncpg.Pool, n: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM readings WHERE device_id = $1", DEVICE) >= n

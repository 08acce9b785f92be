"""The real service and the outbound policy (CONTRACT §9): internal webhook targets are refused
when configured (422 naming the address and the setting), only admins set a unit contact's
webhook, and the alarm detail shows each notification attempt's class, never socket text."""

from __future__ import annotations

import json
import time

import aiomqtt
import asyncpg
import pytest

from devices.auth import create_token
from devices.outbound import NOT_ALLOWED, SETTING
from miaoxiang.settings import Settings
from tests.service import running_service, wait_for

pytestmark = pytest.mark.integration
REGION = "江西省/赣州市/章贡区/南外街道"
DEVICE = "868120305550042"
INTERNAL = {  # URL -> the address the refusal names
    "http://127.0.0.1:9/hook": "127.0.0.1",
    "http://localhost:8080/hook": "127.0.0.1",
    "http://[::1]:9/hook": "::1",
    "http://169.254.169.254/latest/meta-data/": "169.254.169.254",
    "http://100.100.100.200/latest/meta-data/": "100.100.100.200",
    "http://2130706433/": "127.0.0.1",
    "http://0x7f.1/": "127.0.0.1",
    "http://example.com@127.0.0.1/": "127.0.0.1",
    "http://[::ffff:127.0.0.1]/": "7f00:1",
    "http://10.0.0.8/hook": "10.0.0.8",
}


async def operator_token(settings: Settings) -> dict[str, str]:
    conn = await asyncpg.connect(settings.database_url)
    try:
        return {"Authorization": f"Bearer {await create_token(conn, 'op', 'operator', [])}"}  # type: ignore[arg-type]
    finally:
        await conn.close()


def unit(*contacts: dict[str, object]) -> dict[str, object]:
    return {"unit_id": "U1", "name": "章贡区某商场", "region": REGION, "contacts": list(contacts)}


async def test_internal_escalation_contacts_are_refused_when_configured(settings: Settings) -> None:
    async with running_service(settings.model_copy(update={"outbound_allow": []})) as svc:
        for url, address in INTERNAL.items():
            r = await svc.http.post("/api/v1/escalation-contacts", headers=svc.auth(),
                                    json={"region": "江西省", "level": 1, "name": "网格员", "webhook": url})
            assert r.status_code == 422, (url, r.text)
            assert address in r.json()["detail"] and SETTING in r.json()["detail"], (url, r.text)
        for url in ("file:///etc/passwd", "gopher://127.0.0.1:6379/_INFO"):
            r = await svc.http.post("/api/v1/escalation-contacts", headers=svc.auth(),
                                    json={"region": "江西省", "level": 1, "name": "网格员", "webhook": url})
            assert r.status_code == 422, (url, r.text)
        r = await svc.http.post("/api/v1/escalation-contacts", headers=svc.auth(),
                                json={"region": "江西省", "level": 1, "name": "网格员", "webhook": "https://8.8.8.8/hook"})
        assert r.status_code == 201, r.text
        assert await svc.app.state.services.pool.fetchval("SELECT count(*) FROM region_contacts") == 1


async def test_the_allow_list_lets_a_listed_network_through(settings: Settings) -> None:
    async with running_service(settings.model_copy(update={"outbound_allow": ["127.0.0.0/8", "10.8.0.0/16"]})) as svc:
        for url, status in (("http://127.0.0.1:9/a", 201), ("http://localhost:9/b", 201), ("http://10.8.1.2/c", 201),
                            ("http://10.9.1.2/d", 422), ("http://[::1]:9/e", 422)):
            r = await svc.http.post("/api/v1/escalation-contacts", headers=svc.auth(),
                                    json={"level": 0, "name": url, "webhook": url})
            assert r.status_code == status, (url, r.text)


async def test_only_admins_set_unit_contact_webhooks_and_only_allowed_ones(settings: Settings) -> None:
    async with running_service(settings.model_copy(update={"outbound_allow": []})) as svc:
        operator = await operator_token(settings)
        desk = {"name": "值班室", "phone": "0797-1234567"}
        hook = {**desk, "webhook": "https://8.8.8.8/unit-desk"}
        r = await svc.http.post("/api/v1/units", headers=operator, json=unit(hook))
        assert r.status_code == 403 and "admin" in r.json()["detail"], r.text
        assert (await svc.http.post("/api/v1/units", headers=operator, json=unit(desk))).status_code == 201
        for url, address in INTERNAL.items():
            r = await svc.http.post("/api/v1/units", headers=svc.auth(), json=unit({**desk, "webhook": url}))
            assert r.status_code == 422, (url, r.text)
            assert address in r.json()["detail"] and SETTING in r.json()["detail"], (url, r.text)
        for bad in ("file:///etc/passwd", "gopher://10.0.0.1:70/", 42, None):
            r = await svc.http.post("/api/v1/units", headers=svc.auth(), json=unit({**desk, "webhook": bad}))
            assert r.status_code == 422, (bad, r.text)
        r = await svc.http.post("/api/v1/units", headers=svc.auth(), json=unit(hook))
        assert r.status_code == 200 and r.json()["contacts"] == [hook], r.text
        # an operator may change the rest of the unit and resend the webhook it has, not another one
        r = await svc.http.post("/api/v1/units", headers=operator, json={**unit(hook), "address": "章贡区南外街道1号"})
        assert r.status_code == 200, r.text
        r = await svc.http.post("/api/v1/units", headers=operator, json=unit({**desk, "webhook": "https://1.1.1.1/x"}))
        assert r.status_code == 403, r.text
        r = await svc.http.post("/api/v1/units", headers=operator, json=unit(hook, {"name": "b", "webhook": "https://1.1.1.1/"}))
        assert r.status_code == 403, r.text
        r = await svc.http.get("/api/v1/units/U1", headers=svc.auth())
        assert r.json()["contacts"] == [hook] and r.json()["address"] == "章贡区南外街道1号"


async def test_the_alarm_notifications_show_attempt_classes_never_socket_text(settings: Settings) -> None:
    async with running_service(settings.model_copy(update={"outbound_allow": []})) as svc:
        pool: asyncpg.Pool = svc.app.state.services.pool
        # configured when it was allowed (or before the policy existed): each send checks again
        await pool.execute("INSERT INTO region_contacts (region, level, name, webhook) VALUES ('', 0, 'desk', $1)",
                           "http://127.0.0.1:9/desk")
        assert (await svc.http.post("/api/v1/units", headers=svc.auth(), json=unit())).status_code == 201
        device = {"device_id": DEVICE, "kind": "smoke", "unit_id": "U1"}
        r = await svc.http.post("/api/v1/devices", headers=svc.auth(), json=device)
        assert r.status_code == 201, r.text
        host, port = (settings.mqtt_url or "").removeprefix("mqtt://").split(":")
        async with aiomqtt.Client(host, int(port)) as pub:
            report = {"ts": int(time.time() * 1000), "seq": 1, "event": "alarm", "data": {"temperature_c": 25}}
            await pub.publish(settings.topic("evt", "smoke", DEVICE), json.dumps(report), qos=1)
        alarm_id = await wait_for(lambda: pool.fetchval("SELECT alarm_id FROM notifications WHERE state = 'failed'"),
                                  timeout=20)
        r = await svc.http.get(f"/api/v1/alarms/{alarm_id}/notifications", headers=svc.auth())
        assert r.status_code == 200, r.text
        [told] = r.json()["items"]
        assert (told["responder"]["name"], told["state"], told["error_class"]) == ("desk", "failed", NOT_ALLOWED)
        assert [(s["ok"], s["error_class"]) for s in told["sends"]] == [(False, NOT_ALLOWED)]  # not retried
        assert "127.0.0.1" not in r.text  # neither the address nor a socket's text

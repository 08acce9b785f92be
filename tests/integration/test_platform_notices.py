"""Platform notices reach their services, through the real service (PostgreSQL, Mosquitto, HTTP):
CTWing and OneNET online/offline change a device's status as `GET /api/v1/devices/{id}` shows
it, and a CTWing commandResponse changes a command as the commands API shows it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from typing import Any

import asyncpg
import pytest

from miaoxiang.settings import Settings
from tests.service import RunningService, running_service, wait_for

pytestmark = pytest.mark.integration
IMEI = "868120301234567"
PRODUCT = "15017088"
CT_TOKEN = "ct-token"
ON_TOKEN = "onenet-token"
CTW = f"/api/v1/ingest/push/ctw?token={CT_TOKEN}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def ctwing(message_type: str, **fields: Any) -> bytes:
    env = {"timestamp": now_ms(), "tenantId": "2000012345", "productId": PRODUCT, "messageType": message_type,
           "deviceId": PRODUCT + IMEI, **fields}
    return json.dumps(env).encode()


def onenet(msg: dict[str, Any]) -> bytes:
    text = json.dumps(msg)
    sig = base64.b64encode(hashlib.md5((ON_TOKEN + "n1" + text).encode()).digest()).decode()
    return ('{"msg":' + text + ',"nonce":"n1","msg_signature":"' + sig + '"}').encode()


async def _setup(svc: RunningService, *devices: str) -> None:
    for body in ({"name": "ctw", "platform": "ctwing", "token": CT_TOKEN},
                 {"name": "one", "platform": "onenet", "token": ON_TOKEN}):
        r = await svc.http.post("/api/v1/push-sources", json=body, headers=svc.auth())
        assert r.status_code in (200, 201), r.text
    for device_id in devices:
        r = await svc.http.post("/api/v1/devices", json={"device_id": device_id, "kind": "smoke"}, headers=svc.auth())
        assert r.status_code == 201, r.text


async def _status(svc: RunningService, device_id: str) -> str:
    r = await svc.http.get(f"/api/v1/devices/{device_id}", headers=svc.auth())
    assert r.status_code == 200, r.text
    return str(r.json()["status"])


async def _becomes(svc: RunningService, device_id: str, status: str) -> None:
    async def reached() -> bool:
        return await _status(svc, device_id) == status

    await wait_for(reached, timeout=15)


async def _alarm_states(settings: Settings, device_id: str) -> list[str]:
    db = await asyncpg.connect(settings.database_url)
    try:
        rows = await db.fetch(
            "SELECT status FROM alarms WHERE type = 'offline' AND alarm_key = $1 ORDER BY alarm_id",
            f"device:{device_id}",
        )
    finally:
        await db.close()
    return [r["status"] for r in rows]


async def test_ctwing_online_and_offline_change_the_device_status(settings: Settings) -> None:
    fast = settings.model_copy(update={"sweep_interval_s": 0.2})
    async with running_service(fast) as svc:
        await _setup(svc, IMEI)
        assert await _status(svc, IMEI) == "unknown"
        r = await svc.http.post(CTW, content=ctwing("deviceOnlineOfflineReport", eventType=1, IMEI=IMEI))
        assert (r.status_code, r.json()) == (200, {"accepted": 0, "rejected": 0, "notices": 1})
        await _becomes(svc, IMEI, "online")  # seen now, not after its first report
        # the platform's word about a moment before the device was last heard changes nothing
        stale = ctwing("deviceOnlineOfflineReport", eventType=0, IMEI=IMEI, timestamp=now_ms() - 3_600_000)
        assert (await svc.http.post(CTW, content=stale)).status_code == 200
        await asyncio.sleep(1.0)  # five sweeps
        assert await _status(svc, IMEI) == "online"
        # offline without an IMEI (CTWing leaves it out): the IMEI inside deviceId; no 2.5-day wait
        r = await svc.http.post(CTW, content=ctwing("deviceOnlineOfflineReport", eventType=0))
        assert (r.status_code, r.json()["notices"]) == (200, 1)
        await _becomes(svc, IMEI, "offline")
        body = (await svc.http.get(f"/api/v1/devices/{IMEI}", headers=svc.auth())).json()
        assert body["offline_since"] is not None
        assert await wait_for(lambda: _alarm_states(fast, IMEI)) == ["active_unack"]  # the sweep's offline alarm
        # back online: the same path as any report, so the offline alarm clears
        await svc.http.post(CTW, content=ctwing("deviceOnlineOfflineReport", eventType=1, IMEI=IMEI))
        await _becomes(svc, IMEI, "online")

        async def cleared() -> bool:
            return await _alarm_states(fast, IMEI) == ["cleared_unack"]

        await wait_for(cleared)


async def test_onenet_status_messages_and_unregistered_devices(settings: Settings) -> None:
    other = "868120301234568"
    fast = settings.model_copy(update={"sweep_interval_s": 0.2})
    async with running_service(fast) as svc:
        await _setup(svc, IMEI)
        one = "/api/v1/ingest/push/one"
        r = await svc.http.post(one, content=onenet({"at": now_ms(), "type": 2, "imei": IMEI, "status": 1}))
        assert (r.status_code, r.json()["notices"]) == (200, 1)
        await _becomes(svc, IMEI, "online")
        r = await svc.http.post(one, content=onenet({"at": now_ms(), "type": 2, "imei": IMEI, "status": 0}))
        assert (r.status_code, r.json()["notices"]) == (200, 1)
        await _becomes(svc, IMEI, "offline")
        # a device nobody registered: kept as a dead letter with its reason, not dropped, not a 4xx
        r = await svc.http.post(CTW, content=ctwing("deviceOnlineOfflineReport", eventType=0, IMEI=other))
        assert (r.status_code, r.json()) == (200, {"accepted": 0, "rejected": 1, "notices": 0})
        dead = (await svc.http.get("/api/v1/dead-letters", headers=svc.auth())).json()["items"]
        assert [d["reason"] for d in dead] == [f"ctwing says unregistered device {other} is offline"]
        assert (await svc.http.get(f"/api/v1/devices/{other}", headers=svc.auth())).status_code == 404


async def _command(svc: RunningService, device_id: str) -> str:
    r = await svc.http.post(f"/api/v1/devices/{device_id}/commands", json={"cmd": "self_test"}, headers=svc.auth())
    assert r.status_code == 201, r.text
    return str(r.json()["cmd_id"])


async def _command_state(svc: RunningService, cmd_id: str) -> dict[str, Any]:
    r = await svc.http.get(f"/api/v1/commands/{cmd_id}", headers=svc.auth())
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_ctwing_command_response_changes_the_command(settings: Settings) -> None:
    async with running_service(settings) as svc:
        await _setup(svc, IMEI)
        older = await _command(svc, IMEI)
        newest = await _command(svc, IMEI)
        # DELIVERED: still sent, the platform's word recorded
        delivered = ctwing("commandResponse", IMEI=IMEI, taskId=7, result={"resultCode": "DELIVERED"})
        r = await svc.http.post(CTW, content=delivered)
        assert (r.status_code, r.json()["notices"]) == (200, 1)
        command = await _command_state(svc, newest)
        assert command["state"] == "sent"
        assert [e["detail"] for e in command["events"]][-1] == "ctwing DELIVERED (task 7)"
        # FAILED without a cmd_id: the device's newest sent command fails
        failed = ctwing("commandResponse", IMEI=IMEI, taskId=7, result={"resultCode": "FAILED"})
        assert (await svc.http.post(CTW, content=failed)).status_code == 200
        command = await _command_state(svc, newest)
        assert (command["state"], command["detail"]) == ("failed", "ctwing FAILED (task 7)")
        assert (await _command_state(svc, older))["state"] == "sent"
        # SUCCESSFUL naming the command the device echoed
        echoed = {"resultCode": "SUCCESSFUL", "resultDetail": {"cmd_id": older}}
        r = await svc.http.post(CTW, content=ctwing("commandResponse", IMEI=IMEI, result=echoed))
        assert r.status_code == 200
        assert (await _command_state(svc, older))["state"] == "acked"
        # nothing left awaiting an answer: the result is a dead letter, the answer still 200
        r = await svc.http.post(CTW, content=ctwing("commandResponse", IMEI=IMEI, result={"resultCode": "FAILED"}))
        assert (r.status_code, r.json()) == (200, {"accepted": 0, "rejected": 1, "notices": 0})
        listed = (await svc.http.get(f"/api/v1/devices/{IMEI}/commands", headers=svc.auth())).json()["items"]
        assert {c["cmd_id"]: c["state"] for c in listed} == {newest: "failed", older: "acked"}

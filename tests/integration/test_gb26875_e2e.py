"""GB/T 26875.3 end to end: the simulated transmission device talks to the real service's TCP
listener; readings land in PostgreSQL, a panel fire reaches the SSE alarm stream, a frame split
over three writes is reassembled and confirmed, and a bad checksum is denied and dead-lettered."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from ingest.codecs.gb26875 import Command, encode_frame
from miaoxiang.settings import Settings
from simulators.uitd import FIRE, UitdSimulator
from tests.integration.test_alarm_api import read_sse
from tests.service import running_service, wait_for

pytestmark = pytest.mark.integration

ADDRESS = 360702001  # a uitd address; its device_id is uitd-{address}
DEVICE = f"uitd-{ADDRESS}"
REGION = "江西省/赣州市/章贡区/南外街道"


async def test_panel_fire_over_tcp_reaches_postgres_and_the_alarm_stream(settings: Settings) -> None:
    async with running_service(settings) as svc:
        unit = {"unit_id": "U-gb", "name": "章贡区人民医院", "address": "南外街道 8 号", "region": REGION}
        assert (await svc.http.post("/api/v1/units", json=unit, headers=svc.auth())).status_code in (200, 201)
        device = {"device_id": DEVICE, "kind": "uitd", "unit_id": "U-gb"}
        assert (await svc.http.post("/api/v1/devices", json=device, headers=svc.auth())).status_code in (200, 201)
        port = svc.app.state.services.gb26875.port

        async with svc.http.stream("GET", "/api/v1/alarms/stream", headers=svc.auth()) as stream:
            await wait_for(lambda: svc.app.state.services.alarms.hub.subscribers)
            async with UitdSimulator("127.0.0.1", port, ADDRESS, seed=3) as sim:
                assert (await sim.heartbeat()).command == Command.confirm

                fire = await sim.send(sim.panel.change(0, sim.now(), set_bits=FIRE), pieces=3)  # split frame
                assert (fire.command, fire.dest) == (Command.confirm, ADDRESS)
                component = sim.panel.components[0].id
                [event] = await read_sse(stream, 1)
                assert event.data["type"] == "panel_fire" and event.data["severity"] == "critical"
                assert event.data["device_ids"] == [f"{DEVICE}:{component}"]  # the component is its own detector

                bad = sim.next_frame(sim.panel.change(1, sim.now(), set_bits=FIRE))
                raw = bytearray(encode_frame(bad))
                raw[-3] ^= 0x55  # the checksum byte
                answer = sim.expect_answer(bad.serial)
                await sim.write(bytes(raw))
                deny = await asyncio.wait_for(answer, 3)
                assert (deny.command, deny.serial) == (Command.deny, bad.serial)
                assert (await sim.heartbeat()).command == Command.confirm  # the session stays in sync

        conn = await asyncpg.connect(settings.database_url)
        try:
            rows = await conn.fetch(
                "SELECT event, component FROM readings WHERE device_id = $1 ORDER BY received_at, event", DEVICE
            )
            dead = await conn.fetch("SELECT transport, reason, raw FROM dead_letters")
        finally:
            await conn.close()
    events = [(r["event"], r["component"]) for r in rows]
    assert ("alarm", component) in events
    assert ("heartbeat", None) in events  # heartbeats within one second fold into one (no seq: docs/gb26875.md)
    assert ("alarm", sim.panel.components[1].id) not in events  # the denied frame stored nothing
    [letter] = dead
    assert letter["transport"] == "tcp" and "checksum" in letter["reason"] and bytes(letter["raw"]) == bytes(raw)


async def test_operators_run_duty_checks_and_reads_on_a_connected_device(settings: Settings) -> None:
    """CONTRACT §4's centre-initiated requests from the API: duty check (查岗), read status,
    clock sync; 404 for a device with no session; viewers may not send requests."""
    async with running_service(settings) as svc:
        unit = {"unit_id": "U-duty", "name": "章贡区第一中学", "region": REGION}
        assert (await svc.http.post("/api/v1/units", json=unit, headers=svc.auth())).status_code in (200, 201)
        device = {"device_id": DEVICE, "kind": "uitd", "unit_id": "U-duty"}
        assert (await svc.http.post("/api/v1/devices", json=device, headers=svc.auth())).status_code in (200, 201)
        url = f"/api/v1/uitd/{DEVICE}/requests"
        assert (await svc.http.post(url, json={"request": "duty_check"}, headers=svc.auth())).status_code == 404

        async with UitdSimulator("127.0.0.1", svc.app.state.services.gb26875.port, ADDRESS, seed=3) as sim:
            assert (await sim.heartbeat()).command == Command.confirm  # the session exists from here
            duty = await svc.http.post(url, json={"request": "duty_check", "duty_minutes": 10}, headers=svc.auth())
            assert duty.status_code == 200 and duty.json()["answer"]["command"] == "confirm"
            status = await svc.http.post(url, json={"request": "read_status"}, headers=svc.auth())
            answer = status.json()["answer"]
            assert status.status_code == 200 and answer["command"] == "response" and answer["app_type"] == 21
            assert answer["objects"][0]["object"] == "UitdStatus"
            sync = await svc.http.post(url, json={"request": "sync_clock"}, headers=svc.auth())
            assert sync.status_code == 200 and sync.json()["answer"]["command"] == "confirm"
            [check] = [f for f in sim.centre_frames if f.data[:1] == b"\x5b"]  # type 91, 10 minutes
            assert check.data == b"\x5b\x01\x0a"

            token = await svc.http.post("/api/v1/tokens", json={"name": "v", "role": "viewer"}, headers=svc.auth())
            viewer = {"Authorization": f"Bearer {token.json()['token']}"}
            assert (await svc.http.post(url, json={"request": "read_status"}, headers=viewer)).status_code == 403


async def test_a_device_under_test_raises_no_fire_and_the_listener_counts_on_metrics(settings: Settings) -> None:
    """MIAOXIANG_GB26875_UNDER_TEST: a panel being commissioned sends fire bits that are tests
    (CONTRACT §4); the listener's counters are on /metrics."""
    settings = settings.model_copy(update={"gb26875_under_test": [ADDRESS]})
    async with running_service(settings) as svc:
        device = {"device_id": DEVICE, "kind": "uitd"}
        assert (await svc.http.post("/api/v1/devices", json=device, headers=svc.auth())).status_code in (200, 201)
        async with UitdSimulator("127.0.0.1", svc.app.state.services.gb26875.port, ADDRESS, seed=3) as sim:
            assert (await sim.send(sim.panel.change(0, sim.now(), set_bits=FIRE))).command == Command.confirm
        await asyncio.sleep(0.3)
        alarms = (await svc.http.get("/api/v1/alarms", headers=svc.auth())).json()["items"]
        assert [a for a in alarms if a["response"] != "none"] == []  # kept, but nobody is sent out
        metrics = (await svc.http.get("/metrics")).text
    assert "mx_gb26875_confirmed_total 1.0" in metrics and "mx_gb26875_sessions" in metrics

"""Supervision on the real service (CONTRACT §11): 查岗 duty checks over GB/T 26875 TCP with
simulated transmission devices (answered, missed with its `duty_missed` alarm, unreachable), the
shift handover, shielded panel points feeding the risk grade, and a supervisor's override."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from alerting.reports import online_sample
from devices.clock import wall_clock_ms
from miaoxiang.settings import Settings
from simulators.uitd import UitdSimulator
from tests.service import RunningService, running_service, wait_for

pytestmark = pytest.mark.integration

REGION = "江西省/赣州市/章贡区/南外街道"
SHIELD = 1 << 3


async def _register(svc: RunningService, unit_id: str, addresses: list[int], region: str = REGION) -> None:
    unit = {"unit_id": unit_id, "name": f"单位 {unit_id}", "region": region, "industry": "school"}
    assert (await svc.http.post("/api/v1/units", json=unit, headers=svc.auth())).status_code in (200, 201)
    for a in addresses:
        device = {"device_id": f"uitd-{a}", "kind": "uitd", "unit_id": unit_id}
        assert (await svc.http.post("/api/v1/devices", json=device, headers=svc.auth())).status_code in (200, 201)


async def _token(svc: RunningService, role: str, **scope: list[str]) -> dict[str, str]:
    made = await svc.http.post("/api/v1/tokens", json={"name": role, "role": role, **scope}, headers=svc.auth())
    assert made.status_code in (200, 201), made.text
    return {"Authorization": f"Bearer {made.json()['token']}"}


async def test_duty_checks_are_answered_missed_or_unreachable(settings: Settings) -> None:
    offset = [0]

    def clock() -> int:
        return wall_clock_ms() + offset[0]

    async with running_service(settings, clock=clock) as svc:
        await _register(svc, "U-duty", [101, 102, 103])
        services = svc.app.state.services
        port = services.gb26875.port
        bad = {"device_id": "uitd-101", "region": REGION}
        assert (await svc.http.post("/api/v1/duty-checks", json=bad, headers=svc.auth())).status_code == 422
        unknown = {"device_id": "uitd-999"}
        assert (await svc.http.post("/api/v1/duty-checks", json=unknown, headers=svc.auth())).status_code == 404
        viewer = await _token(svc, "viewer")
        assert (await svc.http.post("/api/v1/duty-checks", json={"region": REGION}, headers=viewer)).status_code == 403

        async with UitdSimulator("127.0.0.1", port, 101, seed=1) as answering, \
                UitdSimulator("127.0.0.1", port, 102, seed=2, answer_duty_check=False) as silent:
            await answering.heartbeat()
            await silent.heartbeat()
            sent = await svc.http.post("/api/v1/duty-checks", json={"region": REGION, "answer_minutes": 1},
                                       headers=svc.auth())
            assert sent.status_code == 201, sent.text
            states = {c["device_id"]: c["state"] for c in sent.json()["items"]}
            assert states == {"uitd-101": "confirmed", "uitd-102": "confirmed", "uitd-103": "unreachable"}
            [frame] = [f for f in silent.centre_frames if f.data[:1] == b"\x5b"]
            assert frame.data == b"\x5b\x01\x01"  # type 91, one minute to answer

            async def settled(device_id: str, state: str) -> bool:
                await services.duty_checks.tick(clock())
                got = await svc.http.get("/api/v1/duty-checks", params={"device_id": device_id}, headers=viewer)
                return got.json()["items"][0]["state"] == state

            await wait_for(lambda: settled("uitd-101", "answered"))
            assert await settled("uitd-102", "confirmed")  # within its minute: not missed yet

            offset[0] = 2 * 60_000  # past the deadline and its grace
            await wait_for(lambda: settled("uitd-102", "missed"))

        missed = (await svc.http.get("/api/v1/duty-checks", params={"state": "missed"}, headers=viewer)).json()["items"]
        assert [c["device_id"] for c in missed] == ["uitd-102"] and missed[0]["alarm_id"] is not None
        answered = (await svc.http.get("/api/v1/duty-checks", params={"device_id": "uitd-101"}, headers=viewer)).json()
        assert answered["items"][0]["answered_at"] is not None
        alarms = (await svc.http.get("/api/v1/alarms", params={"type": "duty_missed"}, headers=viewer)).json()["items"]
        assert [(a["alarm_id"], a["severity"], a["response"], a["device_ids"]) for a in alarms] == [
            (missed[0]["alarm_id"], "minor", "verify", ["uitd-102"])
        ]
        await services.duty_checks.tick(clock())  # settled checks stay settled, the alarm is raised once
        assert len((await svc.http.get("/api/v1/alarms", params={"type": "duty_missed"}, headers=viewer)).json()[
            "items"]) == 1

        elsewhere = await _token(svc, "viewer", regions=["江西省/赣州市/南康区"])
        assert (await svc.http.get("/api/v1/duty-checks", headers=elsewhere)).json()["items"] == []


async def test_shift_handover_lists_open_alarms_and_work_orders(settings: Settings) -> None:
    async with running_service(settings) as svc:
        await _register(svc, "U-a", [201])
        await _register(svc, "U-b", [202], region="江西省/赣州市/南康区")
        pool: asyncpg.Pool = svc.app.state.services.pool
        now = datetime.now(UTC)
        for key, unit, region, status in (("device:uitd-201", "U-a", REGION, "active_unack"),
                                          ("device:uitd-202", "U-b", "江西省/赣州市/南康区", "active_ack"),
                                          ("device:uitd-201x", "U-a", REGION, "resolved")):
            await pool.execute(
                """INSERT INTO alarms (alarm_key, type, severity, response, status, device_ids, unit_id, region,
                                       first_seen, last_seen, rule)
                   VALUES ($1, 'device_fault', 'minor', 'none', $2, $3, $4, $5, $6, $6, 'test')""",
                key, status, [key.removeprefix("device:")], unit, region, now,
            )
        orders = await pool.fetchval("SELECT to_regclass('work_orders') IS NOT NULL")
        if orders:
            await pool.execute(
                """INSERT INTO work_orders (kind, unit_id, region, industry, reason, due, opened_by, created_at,
                                            updated_at)
                   VALUES ('repair', 'U-a', $1, 'school', '故障未修复', $2, 'system', $3, $3)""",
                REGION, (now - timedelta(days=2)).date(), now,
            )
        operator = await _token(svc, "operator", regions=["江西省/赣州市/章贡区"])
        assert (await svc.http.post("/api/v1/shifts", json={"note": ""}, headers=operator)).status_code == 422
        closed = await svc.http.post("/api/v1/shifts", json={"note": "201 号主机故障待修"}, headers=operator)
        assert closed.status_code == 201, closed.text
        shift = closed.json()
        assert [a["device_ids"] for a in shift["open_alarms"]] == [["uitd-201"]]  # in scope, not closed
        if orders:
            assert [(w["kind"], w["overdue"]) for w in shift["open_work_orders"]] == [("repair", True)]
        assert shift["closed_by"] == "operator" and shift["note"] == "201 号主机故障待修"

        listed = (await svc.http.get("/api/v1/shifts", headers=operator)).json()["items"]
        assert [s["shift_id"] for s in listed] == [shift["shift_id"]]
        other = await _token(svc, "viewer", regions=["江西省/赣州市/南康区"])
        assert (await svc.http.get("/api/v1/shifts", headers=other)).json()["items"] == []  # not their note
        assert len((await svc.http.get("/api/v1/shifts", headers=svc.auth())).json()["items"]) == 1


async def test_shielded_points_raise_the_grade_and_a_supervisor_overrides_it(settings: Settings) -> None:
    async with running_service(settings) as svc:
        await _register(svc, "U-s", [301])
        services = svc.app.state.services
        async with UitdSimulator("127.0.0.1", services.gb26875.port, 301, seed=4) as sim:
            await sim.send(sim.panel.change(0, sim.now(), set_bits=SHIELD))
            await sim.send(sim.panel.change(1, sim.now(), set_bits=SHIELD))

            async def shielded() -> list[dict]:
                got = await svc.http.get("/api/v1/uitd/uitd-301/shielded", headers=svc.auth())
                return got.json()["items"]

            points = await wait_for(lambda: _at_least(shielded, 2))
            assert {p["point"] for p in points} == {sim.panel.components[0].id, sim.panel.components[1].id}
            await sim.send(sim.panel.change(1, sim.now(), clear_bits=SHIELD))
            points = await wait_for(lambda: _exactly(shielded, 1))
            assert points[0]["point"] == sim.panel.components[0].id
            assert points[0]["description"] == sim.panel.components[0].description

        await services.risk.refresh()
        risk = (await svc.http.get("/api/v1/risk/units/U-s", headers=svc.auth())).json()
        assert risk["inputs"]["shielded_points"] == 1 and risk["parts"]["upkeep"] == 4.0
        computed = risk["colour"]
        assert computed != "red"
        assert (await svc.http.get("/api/v1/uitd/uitd-999/shielded", headers=svc.auth())).status_code == 404

        until = (datetime.now(UTC) + timedelta(days=3)).isoformat()
        body = {"colour": "red", "reason": "消防通道堵塞，现场检查确认", "until": until}
        operator = await _token(svc, "operator")
        url = "/api/v1/units/U-s/risk-override"
        assert (await svc.http.put(url, json=body, headers=operator)).status_code == 403
        past = {**body, "until": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()}
        assert (await svc.http.put(url, json=past, headers=svc.auth())).status_code == 422
        assert (await svc.http.put(url, json={**body, "colour": "purple"}, headers=svc.auth())).status_code == 422
        assert (await svc.http.put("/api/v1/units/U-none/risk-override", json=body, headers=svc.auth())).status_code \
            == 404
        assert (await svc.http.put(url, json=body, headers=svc.auth())).status_code == 200
        risk = (await svc.http.get("/api/v1/risk/units/U-s", headers=svc.auth())).json()
        assert risk["colour"] == "red" and risk["override"] == "red" and risk["parts"]["upkeep"] == 4.0
        assert (await svc.http.delete(url, headers=svc.auth())).status_code == 200
        assert (await svc.http.delete(url, headers=svc.auth())).status_code == 404
        risk = (await svc.http.get("/api/v1/risk/units/U-s", headers=svc.auth())).json()
        assert risk["colour"] == computed and risk["override"] is None
        history = (await svc.http.get(url, headers=operator)).json()
        assert history["active"] is None
        [audit] = history["items"]
        assert (audit["colour"], audit["set_by"], audit["lifted_by"]) == ("red", "admin", "admin")
        assert audit["reason"] == body["reason"]


Fetch = Callable[[], Awaitable[list[dict]]]


async def _at_least(fetch: Fetch, n: int) -> list[dict] | None:
    items = await fetch()
    return items if len(items) >= n else None


async def _exactly(fetch: Fetch, n: int) -> list[dict] | None:
    items = await fetch()
    return items if len(items) == n else None


async def test_daily_random_check_and_online_sample(settings: Settings) -> None:
    """MIAOXIANG_DUTY_CHECK_RANDOM_REGIONS: one random check a local day per region (here of a
    device without a session: unreachable); the daily online sample is taken once a day."""
    tz = ZoneInfo(settings.device_tz)
    evening = datetime.now(tz).replace(hour=20, minute=30, second=0, microsecond=0)  # after any random time
    offset = int(evening.timestamp() * 1000) - wall_clock_ms()

    def clock() -> int:
        return wall_clock_ms() + offset

    settings = settings.model_copy(update={"duty_check_random_regions": [REGION]})
    async with running_service(settings, clock=clock) as svc:
        await _register(svc, "U-r", [401, 402])
        await _register(svc, "U-o", [403], region="江西省/赣州市/南康区")
        services = svc.app.state.services
        await services.duty_checks.tick(clock())
        await services.duty_checks.tick(clock())  # the day's check is sent once
        checks = (await svc.http.get("/api/v1/duty-checks", headers=svc.auth())).json()["items"]
        assert [(c["origin"], c["requested_by"], c["state"]) for c in checks] == [("random", "system", "unreachable")]
        assert checks[0]["device_id"] in ("uitd-401", "uitd-402")

        await wait_for(lambda: services.fleet.slot("uitd-403") >= 0)
        pool: asyncpg.Pool = services.pool
        await pool.execute("DELETE FROM online_samples")  # the background job may have taken today's already
        assert await online_sample.take(pool, services.fleet, evening, tz)
        assert not await online_sample.take(pool, services.fleet, evening, tz)  # once a day
        rows = await pool.fetch("SELECT day, region, industry, registered, online FROM online_samples ORDER BY region")
        assert [(r["day"], r["region"], r["registered"], r["online"]) for r in rows] == [
            (evening.date(), "江西省/赣州市/南康区", 1, 0), (evening.date(), REGION, 2, 0)]

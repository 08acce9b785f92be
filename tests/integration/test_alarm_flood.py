"""Flood control in the alarm lifecycle against PostgreSQL: repeats coalesced and written once per
flush, every other decision written at once and after its own alarm's waiting repeats, and the
flooding mark (audited, on the alarms, cleared by an operator)."""

from __future__ import annotations

import json

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from alerting.lifecycle import AlarmLifecycle
from alerting.metrics import AlarmMetrics
from alerting.model import AlarmType, Decision, Response, Severity
from alerting.stream import AlarmHub, db_replay
from devices.fleet import FLOODING, Fleet
from devices.kinds import Kind
from tests.clock import Clock

pytestmark = pytest.mark.integration
T0 = 1_795_341_600_000



def lifecycle(pool: asyncpg.Pool, clock: Clock, **options: float) -> AlarmLifecycle:
    fleet = Fleet()
    fleet.set_unit("U1", region="江西省/赣州市")
    for d in ("D1", "D2"):
        fleet.upsert(d, Kind.smoke, unit_id="U1")
    metrics = AlarmMetrics(CollectorRegistry())
    return AlarmLifecycle(pool, AlarmHub(db_replay(pool), metrics=metrics), fleet, clock, metrics=metrics, **options)


def smoke(ts: int, device: str = "D1", action: str = "raise") -> Decision:
    return Decision(action, f"device:{device}", AlarmType.smoke, Severity.major, Response.verify, "smoke_alarm", ts,
                    [device], None, [{"device_id": device, "ts_ms": ts}])


async def actions(pool: asyncpg.Pool) -> list[tuple[str, str]]:
    rows = await pool.fetch(
        "SELECT a.alarm_key, e.action FROM alarm_events e JOIN alarms a USING (alarm_id) ORDER BY e.event_id")
    return [(r["alarm_key"].removeprefix("device:"), r["action"]) for r in rows]


async def count(pool: asyncpg.Pool, device: str = "D1") -> int:
    return await pool.fetchval("SELECT count FROM alarms WHERE alarm_key = $1 ORDER BY alarm_id DESC LIMIT 1",
                               f"device:{device}")


async def test_repeats_wait_for_the_flush_and_a_new_alarm_does_not(pool: asyncpg.Pool) -> None:
    lc = lifecycle(pool, Clock(T0))
    await lc.handle([smoke(T0)])
    await lc.handle([smoke(T0 + i) for i in range(1, 101)] + [smoke(T0 + 200, "D2")])
    assert await count(pool) == 1 and await count(pool, "D2") == 1  # D2 committed, D1's repeats waiting
    assert await actions(pool) == [("D1", "raised"), ("D2", "raised")]
    await lc.flush(T0 + 1000)
    await lc.flush(T0 + 2000)  # nothing waits: nothing written
    assert await count(pool) == 101
    assert await actions(pool) == [("D1", "raised"), ("D2", "raised"), ("D1", "repeated")]
    detail = await pool.fetchval("SELECT detail FROM alarm_events WHERE action = 'repeated'")
    assert json.loads(detail)["repeats"] == 100
    last = [e for e in lc.hub.recent if e.data["device_ids"] == ["D1"]][-1].data
    assert last["count"] == 101 and last["last_seen"].endswith(".100Z")


async def test_a_new_alarms_own_repeats_in_its_batch_are_coalesced(pool: asyncpg.Pool) -> None:
    lc = lifecycle(pool, Clock(T0))
    await lc.handle([smoke(T0 + i) for i in range(50)])
    assert await actions(pool) == [("D1", "raised")]
    await lc.flush(T0)
    assert await count(pool) == 50


async def test_a_clear_writes_the_waiting_repeats_first_and_a_later_raise_reopens(pool: asyncpg.Pool) -> None:
    lc = lifecycle(pool, Clock(T0))
    await lc.handle([smoke(T0)])
    await lc.handle([smoke(T0 + 1), smoke(T0 + 2), smoke(T0 + 3, action="clear"), smoke(T0 + 4)])
    assert await actions(pool) == [("D1", "raised"), ("D1", "repeated"), ("D1", "cleared"), ("D1", "reopened")]
    row = await pool.fetchrow("SELECT status, count FROM alarms")
    assert (row["status"], row["count"]) == ("active_unack", 4)


async def test_an_operator_resolve_writes_the_waiting_repeats_first(pool: asyncpg.Pool) -> None:
    lc = lifecycle(pool, Clock(T0))
    await lc.handle([smoke(T0)])
    await lc.handle([smoke(T0 + 1), smoke(T0 + 2)])
    alarm_id = await pool.fetchval("SELECT alarm_id FROM alarms")
    await lc.resolve(alarm_id, "false_alarm", None, "op1")
    await lc.flush(T0 + 1000)
    assert await actions(pool) == [("D1", "raised"), ("D1", "repeated"), ("D1", "resolved")]
    assert await count(pool) == 3
    await lc.handle([smoke(T0 + 5000)])  # the alarm is closed: a new one
    assert await pool.fetchval("SELECT count(*) FROM alarms") == 2


async def test_a_device_above_the_rate_is_marked_flooding_and_an_operator_clears_it(pool: asyncpg.Pool) -> None:
    clock = Clock(T0)
    lc = lifecycle(pool, clock, flood_alarms_per_s=5, flood_window_s=3)
    await lc.flush(clock.now)  # the rate's first interval starts
    for second in range(1, 5):
        await lc.handle([smoke(T0 + second * 1000 + i) for i in range(6)] + [smoke(T0 + second * 1000, "D2")])
        clock.now = T0 + second * 1000
        await lc.flush(clock.now)
    slot = lc.fleet.slot("D1")
    assert int(lc.fleet.flags[slot]) & FLOODING and not int(lc.fleet.flags[lc.fleet.slot("D2")]) & FLOODING
    audit = await pool.fetch("SELECT device_id, action, actor, detail FROM device_audit")
    assert [(r["device_id"], r["action"], r["actor"]) for r in audit] == [("D1", "flooding_marked", "system")]
    assert json.loads(audit[0]["detail"]) == {"alarms_per_s": 5, "window_s": 3}
    assert await pool.fetchval("SELECT rule FROM alarms WHERE alarm_key = 'device:D1'") == "smoke_alarm+flooding"
    assert ("D1", "flooding_marked") in await actions(pool)
    assert await count(pool) == 24  # marked, and still every repeat counted
    assert await lc.clear_flooding(slot, "op1", "探测器已更换") is True
    assert not int(lc.fleet.flags[slot]) & FLOODING
    assert await lc.clear_flooding(slot, "op1", None) is False
    cleared = await pool.fetchrow("SELECT actor, detail FROM device_audit WHERE action = 'flooding_cleared'")
    assert (cleared["actor"], json.loads(cleared["detail"])) == ("op1", {"note": "探测器已更换"})

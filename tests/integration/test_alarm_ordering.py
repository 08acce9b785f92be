"""Ordering of alarm reports on real PostgreSQL when device clocks lie (issue 16).

A device clock ahead is clamped at ingress (`ingest.clock_skew`); one set back, or stuck, makes
reports look older than the alarm they follow. A raise received after the alarm's latest change
(the operator's resolve, a clear) is judged by its receive time and raises or reopens; only a
report in flight when the alarm changed, or a copy of one it took, is late, and leaves a
`late_report` audit row, a counter and a log line. Clears stay ordered by device time.
"""

from __future__ import annotations

import asyncio
import itertools
import json

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from alerting.core import Correlator
from alerting.lifecycle import AlarmLifecycle, InvalidTransition
from alerting.metrics import AlarmMetrics
from alerting.model import ACTIVE_STATUSES, AlarmType, Decision, Response, Severity
from alerting.service import enrich, received_times
from alerting.stream import AlarmHub, db_replay
from devices.batch import ReadingColumns
from devices.fleet import Fleet
from devices.kinds import Event, Kind
from devices.reading import Reading
from ingest.clock_skew import check_clocks
from ingest.codecs.values import MAX_TS_MS
from miaoxiang.migrate import migrate
from miaoxiang.settings import DEFAULT_MIGRATIONS_DIR
from tests.clock import Clock

pytestmark = pytest.mark.integration
T0 = 1_795_341_600_000
DAY = 86_400_000
TOLERANCE_MS = 300_000



def lifecycle(pool: asyncpg.Pool, clock: Clock) -> AlarmLifecycle:
    fleet = Fleet()
    fleet.set_unit("U1", region="江西省/赣州市")
    fleet.upsert("D1", Kind.smoke, unit_id="U1")
    metrics = AlarmMetrics(CollectorRegistry())
    return AlarmLifecycle(pool, AlarmHub(db_replay(pool), metrics=metrics), fleet, clock, metrics=metrics)


def smoke(ts: int, action: str = "raise", seq: int | None = None) -> Decision:
    entry: dict = {"device_id": "D1", "ts_ms": ts, "event": "alarm" if action == "raise" else "alarm_clear"}
    if seq is not None:
        entry["seq"] = seq
    return Decision(action, "device:D1", AlarmType.smoke, Severity.major, Response.verify, "smoke_alarm", ts, ["D1"],
                    "U1", [entry])


async def rows(pool: asyncpg.Pool) -> list[tuple[str, int]]:
    return [(r["status"], r["count"]) for r in await pool.fetch("SELECT * FROM alarms ORDER BY alarm_id")]


async def actions(pool: asyncpg.Pool) -> list[str]:
    return [r["action"] for r in await pool.fetch("SELECT action FROM alarm_events ORDER BY event_id")]


async def test_a_raise_received_after_the_resolve_raises_whatever_its_device_time(pool: asyncpg.Pool) -> None:
    clock = Clock(T0)
    lc = lifecycle(pool, clock)
    await lc.handle([smoke(T0 + DAY, seq=1)], [T0])  # a clock a day ahead (not clamped here: the lifecycle alone)
    [alarm_id] = [r["alarm_id"] for r in await pool.fetch("SELECT alarm_id FROM alarms")]
    clock.now += 1_000
    await lc.handle([smoke(T0 + 1_000, "clear")], [clock.now])  # the real clear is older than the alarm
    assert await rows(pool) == [("active_unack", 1)]  # an out-of-order clear does not clear a newer alarm
    clock.now += 1_000
    await lc.resolve(alarm_id, "false_alarm", None, "op1")
    clock.now += 1_000
    await lc.handle([smoke(T0 + 3_000, seq=2)], [clock.now])  # genuine, received after the resolve
    assert await rows(pool) == [("resolved", 1), ("active_unack", 1)]
    assert await actions(pool) == ["raised", "late_report", "resolved", "raised"]
    assert lc.metrics is not None and lc.metrics.late.labels("smoke", "clear")._value.get() == 1


async def test_a_copy_or_a_report_in_flight_at_the_resolve_is_late_and_audited(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(T0)
    lc = lifecycle(pool, clock)
    await lc.handle([smoke(T0, seq=7)], [T0])
    [alarm_id] = [r["alarm_id"] for r in await pool.fetch("SELECT alarm_id FROM alarms")]
    clock.now += 2_000
    await lc.resolve(alarm_id, "fire", None, "op1")
    clock.now += 1_000
    await lc.handle([smoke(T0, seq=7)], [clock.now])  # a redelivered copy, after the resolve: no new alarm
    await lc.handle([smoke(T0 - 500, seq=6)], [T0 + 1_000])  # received before the resolve, written after
    assert await rows(pool) == [("resolved", 1)]
    assert await actions(pool) == ["raised", "resolved", "late_report", "late_report"]
    late = await pool.fetch("SELECT detail FROM alarm_events WHERE action = 'late_report' ORDER BY event_id")
    assert [json.loads(r["detail"])["seq"] for r in late] == [7, 6]
    assert lc.metrics is not None and lc.metrics.late.labels("smoke", "raise")._value.get() == 2
    assert "late raise of device:D1/smoke" in caplog.text
    clock.now += 1_000
    await lc.handle([smoke(T0 - 500, seq=8)], [clock.now])  # the same old device time, a new report: raises
    assert await rows(pool) == [("resolved", 1), ("active_unack", 1)]


async def test_a_raise_received_after_the_clear_reopens_though_its_clock_was_set_back(pool: asyncpg.Pool) -> None:
    clock = Clock(T0)
    lc = lifecycle(pool, clock)
    await lc.handle([smoke(T0 + 10_000, seq=1)], [T0])
    clock.now += 1_000
    await lc.handle([smoke(T0 + 20_000, "clear")], [clock.now])
    assert await rows(pool) == [("cleared_unack", 1)]
    clock.now += 1_000
    await lc.handle([smoke(0, seq=2)], [clock.now])  # the clock reset to 1970 after a reboot
    assert await rows(pool) == [("active_unack", 2)]
    assert await actions(pool) == ["raised", "cleared", "reopened"]


# --- property: arbitrary device times through the core and the lifecycle ----------------------
TIMES = {
    "zero": lambda now: 0,
    "year_ago": lambda now: now - 365 * DAY,
    "behind": lambda now: now - 90_000,
    "now": lambda now: now,
    "ahead_within_tolerance": lambda now: now + 120_000,
    "day_ahead": lambda now: now + DAY,
    "year_9999": lambda now: MAX_TS_MS,
}
STEPS = st.lists(st.tuples(
    st.sampled_from(["alarm", "alarm", "alarm_clear", "resolve", "ack"]),
    st.sampled_from(sorted(TIMES)),
    st.integers(1, 400_000),  # service time since the previous step, ms
), min_size=1, max_size=14)
_examples = itertools.count()


async def _scenario(url: str, steps: list[tuple[str, str, int]], device: str) -> None:
    """Drive one detector through the clamp, the correlation core and the lifecycle; after each
    alarm report it must have an active alarm (raised, folded, reopened, or older but sounding)."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        clock = Clock(T0)
        fleet = Fleet()
        fleet.set_unit("U1")
        slot = fleet.upsert(device, Kind.smoke, unit_id="U1")
        core = Correlator()
        lc = AlarmLifecycle(pool, AlarmHub(db_replay(pool)), fleet, clock)
        key = f"device:{device}"
        for seq, (what, when, gap) in enumerate(steps):
            clock.now += gap
            if what in ("resolve", "ack"):
                row = await pool.fetchrow("SELECT alarm_id FROM alarms WHERE alarm_key = $1 AND type = 'smoke' "
                                          "AND status <> 'resolved' ORDER BY alarm_id DESC LIMIT 1", key)
                if row is not None:
                    try:
                        if what == "resolve":
                            await lc.resolve(row["alarm_id"], "false_alarm", None, "op")
                        else:
                            await lc.acknowledge(row["alarm_id"], "op")
                    except InvalidTransition:
                        pass
                continue
            r = Reading(device, Kind.smoke, Event[what], TIMES[when](clock.now), clock.now, seq=seq)
            check_clocks([r], TOLERANCE_MS, fleet.clock_skew)
            assert r.ts_ms <= clock.now + TOLERANCE_MS
            columns = ReadingColumns.from_readings([r], [slot])
            decisions = core.evaluate(columns, fleet, clock.now)
            fleet.apply(columns)
            enrich(decisions, [r])
            await lc.handle(decisions, received_times(decisions, [r]))
            if what == "alarm":
                status = await pool.fetchval(
                    "SELECT status FROM alarms WHERE alarm_key = $1 AND type = 'smoke' ORDER BY alarm_id DESC LIMIT 1",
                    key)
                assert status in ACTIVE_STATUSES, (seq, what, when, status)
    finally:
        await pool.close()


@pytest.fixture
async def migrated_url(database_url: str) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn, DEFAULT_MIGRATIONS_DIR)
    finally:
        await conn.close()
    return database_url


def test_every_alarm_report_after_a_resolve_raises_or_folds(migrated_url: str) -> None:
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(STEPS)
    def check(steps: list[tuple[str, str, int]]) -> None:
        asyncio.run(_scenario(migrated_url, steps, f"P{next(_examples)}"))

    check()

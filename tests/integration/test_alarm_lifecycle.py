"""Alarm lifecycle on real PostgreSQL: raise, fold (also under concurrent workers), late reports,
upgrades, transient clears, acknowledge/resolve, the 60 s verify upgrade."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from alerting.lifecycle import AlarmLifecycle, InvalidTransition
from alerting.metrics import AlarmMetrics
from alerting.model import AlarmType, Decision, Response, Severity
from alerting.response.notifier import Notifier
from alerting.stream import AlarmHub, StreamEvent, db_replay
from devices.fleet import FLAPPING, Fleet
from devices.kinds import Kind
from miaoxiang.embedded import free_port
from miaoxiang.migrate import migrate
from miaoxiang.settings import DEFAULT_MIGRATIONS_DIR
from tests.clock import Clock

pytestmark = pytest.mark.integration
T0 = 1_795_341_600_000
REGION = "江西省/赣州市/章贡区/南外街道"


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(database_url, min_size=1, max_size=6)
    async with p.acquire() as conn:
        await migrate(conn, DEFAULT_MIGRATIONS_DIR)
    await p.executemany("INSERT INTO region_contacts (region, level, name, webhook) VALUES ('', $1, 'all', $2)",
                        [(lvl, f"http://127.0.0.1:9/{lvl}") for lvl in range(4)])
    yield p
    await p.close()


def make_fleet() -> Fleet:
    fleet = Fleet()
    fleet.set_unit("U1", region=REGION)
    for i in range(1, 4):
        fleet.upsert(f"D{i}", Kind.smoke, unit_id="U1")
    fleet.upsert("E1", Kind.electrical, unit_id="U1")
    return fleet


class Worker:
    """One service process's alarm side: hub, notifier (not running: notifications stay in the outbox), lifecycle."""

    def __init__(self, pool: asyncpg.Pool, clock: Clock, fleet: Fleet | None = None) -> None:
        self.metrics = AlarmMetrics(CollectorRegistry())
        self.hub = AlarmHub(db_replay(pool), metrics=self.metrics)
        self.notifier = Notifier(pool, clock, metrics=self.metrics)
        self.fleet = fleet or make_fleet()
        self.lifecycle = AlarmLifecycle(pool, self.hub, self.fleet, clock, notifier=self.notifier, metrics=self.metrics)

    def published(self) -> list[StreamEvent]:
        return list(self.hub.recent)

    async def queued_levels(self) -> list[int]:
        """Levels of the notifications written (one catch-all contact per level)."""
        return [r["level"] for r in await self.lifecycle.pool.fetch("SELECT level FROM notifications ORDER BY id")]


def smoke(ts: int, action: str = "raise", *, device: str = "D1", rule: str = "smoke_alarm",
          response: Response = Response.verify, severity: Severity = Severity.major,
          type: AlarmType = AlarmType.smoke, key: str | None = None) -> Decision:
    return Decision(action, key or f"device:{device}", type, severity, response, rule, ts, [device], None,
                    [{"device_id": device, "ts_ms": ts, "event": "alarm" if action == "raise" else "alarm_clear"}])


async def alarms(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM alarms ORDER BY alarm_id")


async def events(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM alarm_events ORDER BY event_id")


async def test_raise_and_repeats_fold_into_one_alarm(pool: asyncpg.Pool) -> None:
    w = Worker(pool, Clock(T0))
    await w.lifecycle.handle([smoke(T0)])
    await w.lifecycle.handle([smoke(T0 + 30_000), smoke(T0 + 60_000)])
    [a] = await alarms(pool)
    assert a["count"] == 1  # repeats are coalesced in memory until the next flush
    await w.lifecycle.flush(T0)
    [a] = await alarms(pool)
    assert (a["alarm_key"], a["type"], a["status"], a["count"]) == ("device:D1", "smoke", "active_unack", 3)
    assert (a["unit_id"], a["region"]) == ("U1", REGION)
    assert a["last_seen"].timestamp() * 1000 == T0 + 60_000 and a["first_seen"].timestamp() * 1000 == T0
    evs = await events(pool)
    assert [e["action"] for e in evs] == ["raised", "repeated"]  # one write for both repeats
    assert json.loads(evs[1]["detail"])["repeats"] == 2
    # the stream carries every change, with the audit row's id and snapshot
    assert [(p.event_id, p.data) for p in w.published()] == [(e["event_id"], json.loads(e["snapshot"])) for e in evs]
    snap = w.published()[-1].data
    assert snap["alarm_id"] == str(a["alarm_id"]) and snap["count"] == 3
    assert snap["last_seen"] == "2026-11-22T10:01:00.000Z"
    assert await w.queued_levels() == [0]  # the raise notifies level 0; repeats notify nobody
    assert w.metrics.raised.labels("smoke", "verify")._value.get() == 1
    assert w.metrics.folded.labels("smoke")._value.get() == 2


async def test_concurrent_duplicates_from_many_workers_make_one_alarm(pool: asyncpg.Pool, database_url: str) -> None:
    pools = [await asyncpg.create_pool(database_url, min_size=1, max_size=3) for _ in range(4)]
    try:
        workers = [Worker(p, Clock(T0)) for p in pools]
        n = 48
        await asyncio.gather(*(workers[i % 4].lifecycle.handle([smoke(T0)]) for i in range(n)))
    finally:
        for p in pools:
            await p.close()
    [a] = await alarms(pool)
    assert a["count"] == n
    evs = await events(pool)
    assert [e["action"] for e in evs] == ["raised"] + ["repeated"] * (n - 1)
    assert sorted(json.loads(e["snapshot"])["count"] for e in evs) == list(range(1, n + 1))
    for w in workers:  # each worker publishes its own changes in increasing id order
        ids = [p.event_id for p in w.published()]
        assert ids == sorted(ids)
    assert len(await Worker(pool, Clock(T0)).queued_levels()) == 1


async def test_concurrent_storms_over_the_same_keys_neither_deadlock_nor_lose_counts(
    pool: asyncpg.Pool, database_url: str
) -> None:
    pools = [await asyncpg.create_pool(database_url, min_size=1, max_size=2) for _ in range(3)]
    try:
        workers = [Worker(p, Clock(T0)) for p in pools]
        keys = [f"Y{i:02d}" for i in range(10)]
        storms = [[smoke(T0, device=k) for k in (keys if n % 2 else keys[::-1])] for n in range(9)]
        await asyncio.gather(*(workers[n % 3].lifecycle.handle(storm) for n, storm in enumerate(storms)))
    finally:
        for p in pools:
            await p.close()
    rows = await alarms(pool)
    assert sorted(r["alarm_key"] for r in rows) == [f"device:{k}" for k in keys]
    assert {r["count"] for r in rows} == {9}


async def test_late_reports_neither_change_nor_reopen(pool: asyncpg.Pool) -> None:
    w = Worker(pool, Clock(T0))
    lc = w.lifecycle
    await lc.handle([smoke(T0 + 10_000)])
    await lc.handle([smoke(T0 + 5_000)])  # older than last_seen: no change
    await lc.handle([smoke(T0 + 20_000, "clear", rule="alarm_clear")])
    [a] = await alarms(pool)
    assert (a["status"], a["count"]) == ("cleared_unack", 1)
    await lc.handle([smoke(T0 + 15_000)])  # arrives after the clear, but is older: stays cleared
    await lc.handle([smoke(T0 + 12_000, "clear")])  # a late clear: nothing
    [a] = await alarms(pool)
    assert (a["status"], a["count"]) == ("cleared_unack", 1)
    await lc.acknowledge(a["alarm_id"], "op1")  # cleared_ack closes the alarm
    await lc.handle([smoke(T0 + 18_000), smoke(T0 + 20_000)])  # not newer than the closed alarm: no new alarm
    assert len(await alarms(pool)) == 1
    await lc.handle([smoke(T0 + 25_000)])  # a new report: a new alarm
    rows = await alarms(pool)
    assert [(r["status"], r["count"]) for r in rows] == [("cleared_ack", 1), ("active_unack", 1)]
    # each late report leaves its trace on the alarm it was late for, and changes nothing else
    assert [e["action"] for e in await events(pool)] == [
        "raised", "late_report", "cleared", "late_report", "acked", "late_report", "late_report", "raised"]
    assert w.metrics.late.labels("smoke", "raise")._value.get() == 4
    assert w.metrics.ignored.labels("clear")._value.get() == 1  # a clear of a cleared alarm: nothing to do


async def test_repeat_after_clear_reopens_an_unacknowledged_alarm(pool: asyncpg.Pool) -> None:
    w = Worker(pool, Clock(T0))
    await w.lifecycle.handle([smoke(T0), smoke(T0 + 5_000, "clear"), smoke(T0 + 9_000)])
    [a] = await alarms(pool)
    assert (a["status"], a["count"], a["cleared_at"]) == ("active_unack", 2, None)
    assert [e["action"] for e in await events(pool)] == ["raised", "cleared", "reopened"]


async def test_stronger_raise_upgrades_and_records_why(pool: asyncpg.Pool) -> None:
    w = Worker(pool, Clock(T0))
    await w.lifecycle.handle([smoke(T0)])
    hot = smoke(T0 + 2_000, rule="smoke_temp_57c", response=Response.immediate, severity=Severity.critical)
    await w.lifecycle.handle([hot, smoke(T0 + 3_000)])  # a weaker repeat keeps the upgrade
    await w.lifecycle.flush(T0)
    [a] = await alarms(pool)
    assert (a["response"], a["severity"], a["rule"], a["count"]) == (
        "immediate", "critical", "smoke_alarm+smoke_temp_57c", 3
    )
    up = (await events(pool))[1]
    assert up["action"] == "upgraded"
    assert json.loads(up["detail"])["from"] == {"severity": "major", "response": "verify", "rule": "smoke_alarm"}
    assert json.loads(up["detail"])["to"]["response"] == "immediate"
    assert await w.queued_levels() == [0, 1]  # becoming immediate goes at once to level 1 (CONTRACT §8 v2)


async def test_transient_clear_sets_response_none_and_stays_visible(pool: asyncpg.Pool) -> None:
    w = Worker(pool, Clock(T0))
    await w.lifecycle.handle([smoke(T0), smoke(T0 + 4_000, "clear", rule="transient")])
    [a] = await alarms(pool)
    assert (a["status"], a["response"], a["rule"]) == ("cleared_unack", "none", "smoke_alarm+transient")
    assert a["cleared_at"].timestamp() * 1000 == T0 + 4_000


async def test_ack_and_resolve_state_machine(pool: asyncpg.Pool) -> None:
    clock = Clock(T0)
    w = Worker(pool, clock)
    lc = w.lifecycle
    await lc.handle([smoke(T0)])
    [a] = await alarms(pool)
    clock.now = T0 + 42_000
    acked = await lc.acknowledge(a["alarm_id"], "operator-li")
    assert (acked.status, acked.acked_by, acked.acked_at_ms) == ("active_ack", "operator-li", T0 + 42_000)
    with pytest.raises(InvalidTransition):
        await lc.acknowledge(a["alarm_id"], "operator-li")
    await lc.handle([smoke(T0 + 50_000)])  # repeats keep it acknowledged
    await lc.handle([smoke(T0 + 60_000, "clear")])
    assert (await alarms(pool))[0]["status"] == "cleared_ack"
    with pytest.raises(InvalidTransition):
        await lc.acknowledge(a["alarm_id"], "operator-li")
    resolved = await lc.resolve(a["alarm_id"], "false_alarm", "cooking fumes", "operator-wang")
    assert (resolved.status, resolved.classification, resolved.note, resolved.resolved_by) == (
        "resolved", "false_alarm", "cooking fumes", "operator-wang")
    with pytest.raises(InvalidTransition):
        await lc.resolve(a["alarm_id"], "fire", None, "operator-wang")
    with pytest.raises(ValueError):
        await lc.resolve(a["alarm_id"], "arson", None, "operator-wang")
    evs = await events(pool)
    assert [(e["action"], e["actor"]) for e in evs] == [
        ("raised", "system"), ("acked", "operator-li"), ("repeated", "system"), ("cleared", "system"),
        ("resolved", "operator-wang")]
    assert w.metrics.ack_seconds._sum.get() == 42.0


async def test_resolving_an_active_alarm_frees_its_key(pool: asyncpg.Pool) -> None:
    w = Worker(pool, Clock(T0))
    await w.lifecycle.handle([smoke(T0)])
    [a] = await alarms(pool)
    await w.lifecycle.resolve(a["alarm_id"], "test", "drill", "op")
    await w.lifecycle.handle([smoke(T0 + 1_000)])
    rows = await alarms(pool)
    assert [(r["status"], r["count"]) for r in rows] == [("resolved", 1), ("active_unack", 1)]


async def test_unacknowledged_verify_fire_alarm_becomes_immediate_after_60s(pool: asyncpg.Pool) -> None:
    clock = Clock(T0)
    w = Worker(pool, clock)
    w.fleet.flags[w.fleet.slot("D3")] |= FLAPPING
    await w.lifecycle.handle([
        smoke(T0),  # fire class, verify
        smoke(T0, device="D2"),  # acknowledged in time
        smoke(T0, device="D3"),  # flapping detector: stays verify
        smoke(T0, device="E1", type=AlarmType.residual_current, rule="residual_current_300ma"),  # not fire class
    ])
    ids = {r["alarm_key"]: r["alarm_id"] for r in await alarms(pool)}
    await w.lifecycle.acknowledge(ids["device:D2"], "op")
    await w.lifecycle.tick(T0 + 59_999)
    assert {r["response"] for r in await alarms(pool)} == {"verify"}
    await w.lifecycle.tick(T0 + 60_000)
    rows = {r["alarm_key"]: r for r in await alarms(pool)}
    assert (rows["device:D1"]["response"], rows["device:D1"]["rule"]) == ("immediate", "smoke_alarm+unacked_60s")
    assert rows["device:D1"]["severity"] == "major"
    assert [rows[k]["response"] for k in ("device:D2", "device:D3", "device:E1")] == ["verify"] * 3
    assert rows["device:D1"]["escalation_level"] == 1  # now immediate: at once to level 1, then 60 s per level
    await w.lifecycle.tick(T0 + 61_000)  # applied once
    d1 = [e["action"] for e in await events(pool) if e["alarm_id"] == ids["device:D1"]]
    assert d1 == ["raised", "upgraded"]


async def test_the_60s_wait_restarts_when_a_cleared_alarm_reopens(pool: asyncpg.Pool) -> None:
    """A detector that alarms again two minutes after its first alarm cleared has been waiting
    for an answer for seconds, not minutes: no upgrade until 60 s after the reopening."""
    clock = Clock(T0)
    w = Worker(pool, clock)
    await w.lifecycle.handle([smoke(T0), smoke(T0 + 25_000, "clear", rule="alarm_clear")])
    clock.now = T0 + 120_000
    await w.lifecycle.handle([smoke(T0 + 120_000)])  # reopened
    [a] = await alarms(pool)
    assert (a["status"], a["count"]) == ("active_unack", 2)
    await w.lifecycle.tick(T0 + 121_000)
    assert (await alarms(pool))[0]["response"] == "verify"
    await w.lifecycle.tick(T0 + 179_999)
    assert (await alarms(pool))[0]["response"] == "verify"
    await w.lifecycle.tick(T0 + 180_000)
    [a] = await alarms(pool)
    assert (a["response"], a["rule"]) == ("immediate", "smoke_alarm+unacked_60s")


async def test_region_comes_from_the_registry_when_the_fleet_lacks_the_unit(pool: asyncpg.Pool) -> None:
    await pool.execute("INSERT INTO units (unit_id, name, region) VALUES ('U9', '某商场', '浙江省/杭州市/西湖区')")
    w = Worker(pool, Clock(T0))
    d = smoke(T0, device="X1")
    d.unit_id = "U9"
    await w.lifecycle.handle([d])
    [a] = await alarms(pool)
    assert (a["unit_id"], a["region"]) == ("U9", "浙江省/杭州市/西湖区")


async def test_cell_outage_region_is_the_common_prefix(pool: asyncpg.Pool) -> None:
    fleet = make_fleet()
    fleet.set_unit("U2", region="江西省/赣州市/章贡区/解放街道")
    fleet.upsert("D9", Kind.smoke, unit_id="U2")
    w = Worker(pool, Clock(T0), fleet)
    d = Decision("raise", "cell:1A2B3C", AlarmType.network_outage, Severity.major, Response.verify, "cell_outage_20",
                 T0, ["D1", "D2", "D9"], None, [])
    await w.lifecycle.handle([d])
    [a] = await alarms(pool)
    assert (a["unit_id"], a["region"]) == (None, "江西省/赣州市/章贡区")


async def test_a_rejected_decision_is_skipped_and_the_rest_written(pool: asyncpg.Pool) -> None:
    w = Worker(pool, Clock(T0))
    bad = smoke(T0, device="D2")
    bad.device_ids = ["D2\x00"]  # PostgreSQL text cannot hold NUL: the database rejects this one
    await w.lifecycle.handle([smoke(T0), bad, smoke(T0, device="D3")])  # a few: one by one
    assert [r["alarm_key"] for r in await alarms(pool)] == ["device:D1", "device:D3"]
    assert w.metrics.db_errors._value.get() == 1
    storm = [smoke(T0, device=f"X{i:02d}") for i in range(12)] + [bad]  # many: one transaction, then one by one
    await w.lifecycle.handle(storm)
    assert len(await alarms(pool)) == 2 + 12
    assert w.metrics.db_errors._value.get() == 3  # the transaction, then the culprit alone


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def test_database_outage_shows_pending_alarm_then_writes_it(database_url: str, pool: asyncpg.Pool) -> None:
    """The lifecycle reaches PostgreSQL through a TCP relay that is down at first."""
    port = free_port()

    async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        pg_r, pg_w = await asyncio.open_connection("127.0.0.1", 5432)
        await asyncio.gather(_pipe(client_r, pg_w), _pipe(pg_r, client_w))

    db = database_url.rsplit("/", 1)[1]
    relayed = await asyncpg.create_pool(f"postgresql://postgres@127.0.0.1:{port}/{db}", min_size=0, max_size=2)
    w = Worker(relayed, Clock(T0))
    w.lifecycle.retry_max_s = 0.05
    async with w.hub.subscribe(lambda region: True) as sub:
        writing = asyncio.create_task(w.lifecycle.handle([smoke(T0)]))
        pending = await asyncio.wait_for(sub.queue.get(), 5)
        assert pending is not None and (pending.event, pending.event_id) == ("alarm_pending", None)
        assert (pending.data["device_ids"], pending.data["region"], pending.data["alarm_id"]) == (["D1"], REGION, None)
        assert not writing.done() and await alarms(pool) == []
        server = await asyncio.start_server(relay, "127.0.0.1", port)
        try:
            await asyncio.wait_for(writing, 10)
            written = await asyncio.wait_for(sub.queue.get(), 5)
        finally:
            await relayed.close()
            server.close()
    [a] = await alarms(pool)
    assert written is not None and written.event == "alarm" and written.data["alarm_id"] == str(a["alarm_id"])
    assert w.metrics.db_errors._value.get() >= 1

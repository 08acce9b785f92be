"""The ingest pipeline against real PostgreSQL (no broker: transports are tested elsewhere)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from devices.batch import ReadingColumns
from devices.fleet import Fleet
from devices.kinds import Event, Kind
from devices.reading import Reading
from ingest import storage
from ingest.metrics import IngestMetrics
from ingest.pipeline import Pipeline
from ingest.storage import STAGED_AFTER_CONFLICT, ReadingStore, is_untimed_row, prepare, prepare_many

pytestmark = pytest.mark.integration
T0 = 1_795_341_600_000



class Recorder:
    """The batch handler: records what alerting would have seen, in order."""

    def __init__(self) -> None:
        self.batches: list[tuple[list[Reading], ReadingColumns]] = []

    async def __call__(self, readings: list[Reading], columns: ReadingColumns) -> None:
        self.batches.append((readings, columns))


def reading(
    device: str, seq: int | None, event: Event = Event.heartbeat, kind: Kind = Kind.smoke, ts: int = T0
) -> Reading:
    return Reading(device, kind, event, ts + (seq or 0), ts, seq, {"battery_pct": 90.0})


async def run_pipeline(pipeline: Pipeline) -> asyncio.Task[None]:
    return asyncio.create_task(pipeline.run())


def make(pool: asyncpg.Pool, **kw: object) -> tuple[Pipeline, Recorder, Fleet]:
    rec = Recorder()
    fleet = Fleet()
    p = Pipeline(fleet=fleet, store=ReadingStore(pool), on_batch=rec, metrics=IngestMetrics(CollectorRegistry()),
                 batch_ms=5, clock=lambda: T0, **kw)  # type: ignore[arg-type]
    return p, rec, fleet


async def test_duplicates_are_dropped_and_acks_wait_for_the_commit(pool: asyncpg.Pool) -> None:
    p, rec, fleet = make(pool)
    task = await run_pipeline(p)
    try:
        futs = [await p.submit([reading("dev1", s)], lane="tel", transport="mqtt", source="t") for s in (1, 2, 2, 3)]
        futs.append(await p.submit([reading("dev1", 1)], lane="evt", transport="mqtt", source="t"))
        await asyncio.wait_for(asyncio.gather(*futs), 10)
        rows = await pool.fetch("SELECT seq FROM readings ORDER BY seq")
        assert [r["seq"] for r in rows] == [1, 2, 3]
        seen = [r.seq for batch, _ in rec.batches for r in batch]
        assert sorted(seen) == [1, 2, 3]
        assert await pool.fetchval("SELECT quarantined FROM devices WHERE device_id = 'dev1'") is True
        assert fleet.slot("dev1") >= 0
    finally:
        task.cancel()


async def test_database_dedupes_what_memory_forgot(pool: asyncpg.Pool) -> None:
    # A restart empties the in-memory window; the unique index must still refuse the replay.
    for _ in range(2):
        p, _, _ = make(pool)
        task = await run_pipeline(p)
        fut = await p.submit([reading("dev2", 7), reading("dev2", None)], lane="tel", transport="mqtt", source="t")
        await asyncio.wait_for(fut, 10)
        task.cancel()
    assert await pool.fetchval("SELECT count(*) FROM readings WHERE device_id = 'dev2'") == 2


async def test_unknown_devices_rejected_by_setting_and_kind_mismatch_dead_lettered(pool: asyncpg.Pool) -> None:
    p, _rec, fleet = make(pool, unknown_devices="reject")
    fleet.upsert("gas1", Kind.gas)
    task = await run_pipeline(p)
    try:
        fut = await p.submit(
            [reading("stranger", 1), reading("gas1", 1, kind=Kind.smoke), reading("gas1", 2, kind=Kind.gas)],
            lane="tel", transport="http:generic", source="push:x",
        )
        await asyncio.wait_for(fut, 10)
        reasons = sorted(r["reason"] for r in await pool.fetch("SELECT reason FROM dead_letters"))
        assert reasons == [
            "device gas1 is registered as gas, report says smoke",
            "unknown device stranger; register it first",
        ]
        assert [r["device_id"] for r in await pool.fetch("SELECT device_id FROM readings")] == ["gas1"]
    finally:
        task.cancel()


async def test_evt_lane_is_not_delayed_by_a_telemetry_backlog(pool: asyncpg.Pool) -> None:
    p, rec, _ = make(pool, batch_max=500)
    slow_handler_calls: list[str] = []
    original = rec.__call__

    async def handler(readings: list[Reading], columns: ReadingColumns) -> None:
        slow_handler_calls.append("evt" if readings[0].event == Event.alarm else "tel")
        await original(readings, columns)

    p.on_batch = handler
    for i in range(20):  # 20 tel batches are queued before the alarm
        await p.submit([reading(f"t{i}-{j}", j) for j in range(500)], lane="tel", transport="mqtt", source="t")
    await p.submit([reading("fire", 1, Event.alarm)], lane="evt", transport="mqtt", source="t")
    task = await run_pipeline(p)
    try:
        async with asyncio.timeout(20):
            while "evt" not in slow_handler_calls:
                await asyncio.sleep(0.01)
        assert slow_handler_calls.index("evt") <= 1
    finally:
        task.cancel()


async def test_uitd_components_become_detectors_of_their_device(pool: asyncpg.Pool) -> None:
    p, rec, fleet = make(pool)
    fleet.upsert("uitd-42", Kind.uitd, unit_id="unit-a")
    task = await run_pipeline(p)
    try:
        r = Reading("uitd-42", Kind.uitd, Event.alarm, T0, T0, 9, {}, component="1:1:17")
        await asyncio.wait_for(await p.submit([r], lane="evt", transport="tcp", source="t"), 10)
        slot = fleet.slot("uitd-42:1:1:17")
        assert slot >= 0 and int(fleet.parent[slot]) == fleet.slot("uitd-42")
        assert fleet.units.names[int(fleet.unit[slot])] == "unit-a"
        assert int(rec.batches[0][1].slot[0]) == slot
        assert await pool.fetchval("SELECT component FROM readings") == "1:1:17"
    finally:
        task.cancel()


async def test_unnumbered_reports_at_other_times_are_not_duplicates(pool: asyncpg.Pool) -> None:
    # Panels and gateways send no seq: an identical heartbeat 30 s later is a new report.
    p, rec, _ = make(pool)
    task = await run_pipeline(p)
    try:
        same = [Reading("uitd-7", Kind.uitd, Event.heartbeat, T0 + k * 30_000, T0, None, {}) for k in (0, 1, 1)]
        await asyncio.wait_for(await p.submit(same, lane="tel", transport="tcp", source="t"), 10)
        assert await pool.fetchval("SELECT count(*) FROM readings WHERE device_id = 'uitd-7'") == 2
        assert sum(len(b) for b, _ in rec.batches) == 2
    finally:
        task.cancel()


def untimed(device: str, seq: int, received: int) -> Reading:
    """A report with a seq but no device time: it takes its receive time as `ts_ms`."""
    return Reading(device, Kind.smoke, Event.heartbeat, received, received, seq, {"battery_pct": 90.0}, untimed=True)


async def test_redelivered_untimed_reports_are_stored_once(pool: asyncpg.Pool) -> None:
    # A QoS 1 redelivery of a report without `ts` arrives with a new receive time: in memory it
    # meets the original on (device, seq); after a restart the database check finds it.
    p, rec, _ = make(pool)
    task = await run_pipeline(p)
    try:
        first = await p.submit([untimed("nt1", 5, T0)], lane="tel", transport="mqtt", source="t")
        again = await p.submit([untimed("nt1", 5, T0 + 1500)], lane="tel", transport="mqtt", source="t")
        other = await p.submit([untimed("nt1", 6, T0 + 1600)], lane="tel", transport="mqtt", source="t")
        await asyncio.wait_for(asyncio.gather(first, again, other), 10)
    finally:
        task.cancel()
    assert sum(len(b) for b, _ in rec.batches) == 2
    p, rec, _ = make(pool)  # restarted: memory is empty, the broker redelivers what was not acked
    task = await run_pipeline(p)
    try:
        late = await p.submit([untimed("nt1", 5, T0 + 60_000), untimed("nt1", 7, T0 + 60_000)],
                              lane="tel", transport="mqtt", source="t")
        await asyncio.wait_for(late, 10)
    finally:
        task.cancel()
    rows = await pool.fetch("SELECT seq, ts, received_at FROM readings WHERE device_id = 'nt1' ORDER BY seq")
    assert [r["seq"] for r in rows] == [5, 6, 7]
    assert rows[0]["ts"] == rows[0]["received_at"] and int(rows[0]["ts"].timestamp() * 1000) == T0


async def test_untimed_seq_reuse_after_the_window_is_a_new_report(pool: asyncpg.Pool) -> None:
    # The trade-off: seq wraps at 65536 (MX1), so (device, seq) identifies a report only within the
    # dedupe window; the same seq later is a new report.
    window = 600_000
    for received in (T0, T0 + window + 1):
        p, _, _ = make(pool)
        task = await run_pipeline(p)
        await asyncio.wait_for(
            await p.submit([untimed("nt2", 9, received)], lane="tel", transport="mqtt", source="t"), 10
        )
        task.cancel()
    assert await pool.fetchval("SELECT count(*) FROM readings WHERE device_id = 'nt2'") == 2


async def test_timed_reports_with_the_same_seq_at_other_times_are_kept(pool: asyncpg.Pool) -> None:
    p, _rec, _ = make(pool)
    task = await run_pipeline(p)
    try:
        rs = [Reading("tm1", Kind.smoke, Event.heartbeat, T0 + k, T0 + 10, 3, {}) for k in (0, 1)]
        await asyncio.wait_for(await p.submit(rs, lane="tel", transport="mqtt", source="t"), 10)
    finally:
        task.cancel()
    assert await pool.fetchval("SELECT count(*) FROM readings WHERE device_id = 'tm1'") == 2


async def test_rejected_readings_are_dead_lettered_with_their_own_bytes(pool: asyncpg.Pool) -> None:
    p, _, fleet = make(pool, unknown_devices="reject")
    fleet.upsert("gas9", Kind.gas)
    elements = [
        b'{"device_id":"stranger","kind":"smoke"}', b'{"device_id":"gas9","kind":"smoke"}', b'{"device_id":"gas9"}'
    ]
    task = await run_pipeline(p)
    try:
        batch = [reading("stranger", 1), reading("gas9", 1, kind=Kind.smoke), reading("gas9", 2, kind=Kind.gas)]
        fut = await p.submit(
            batch, lane="tel", transport="mqtt", source="b", codec="json_batch", raw=elements.__getitem__
        )
        single = b'{"device_id":"gas9","kind":"water","seq":4}'
        fut2 = await p.submit([reading("gas9", 4, kind=Kind.water)], lane="tel", transport="mqtt", source="s",
                              codec="json", raw=single)
        await asyncio.wait_for(asyncio.gather(fut, fut2), 10)
    finally:
        task.cancel()
    dead = {r["source"] + " " + r["reason"]: bytes(r["raw"]) for r in await pool.fetch("SELECT * FROM dead_letters")}
    assert dead == {
        "b unknown device stranger; register it first": elements[0],
        "b device gas9 is registered as gas, report says smoke": elements[1],
        "s device gas9 is registered as gas, report says water": single,
    }
    m = p.metrics.codec_dead_letters
    assert m.labels("mqtt", "json_batch")._value.get() == 2 and m.labels("mqtt", "json")._value.get() == 1


async def test_the_largest_accepted_seq_is_stored(pool: asyncpg.Pool) -> None:
    # A seq the codec accepts must fit readings.seq, or its batch's write fails forever.
    from ingest.codecs.json_report import decode_json_report
    from ingest.codecs.values import SEQ_LIMIT

    r = decode_json_report(
        b'{"device_id":"big","kind":"smoke","ts":1795341600000,"seq":%d}' % (SEQ_LIMIT - 1), received_ms=T0
    )
    p, _, _ = make(pool)
    task = await run_pipeline(p)
    try:
        await asyncio.wait_for(await p.submit([r], lane="tel", transport="mqtt", source="t"), 10)
    finally:
        task.cancel()
    assert await pool.fetchval("SELECT seq FROM readings WHERE device_id = 'big'") == SEQ_LIMIT - 1


@pytest.mark.parametrize("small_flush", [storage.SMALL_FLUSH, 0], ids=["datetimes", "binary-times"])
async def test_store_copies_timed_rows_directly_and_falls_back_on_stored_copies(
    pool: asyncpg.Pool, small_flush: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Timed rows go straight into `readings`; a write holding a row already stored (memory forgot
    it) is rolled back and staged, so it stores exactly the new rows; times are exact to the
    millisecond at both ends of the range, sent as datetimes (a small flush) or binary; the pool's
    connections decode timestamptz as datetimes afterwards."""
    monkeypatch.setattr(storage, "SMALL_FLUSH", small_flush)
    store = ReadingStore(pool)
    edge = [Reading("edge", Kind.smoke, Event.report, ts, T0, None, {"battery_pct": float(k)})
            for k, ts in enumerate((0, 1, 253_402_300_799_999, T0 + 999))]
    first = [reading("st1", s) for s in (1, 2, 3)] + edge
    assert await store.write(prepare_many(first, "t")[1], [], []) == 7
    assert store._staged_writes == 0  # the direct COPY took them
    stored = await pool.fetch("SELECT dedup, ts, received_at FROM readings")
    got = {r["dedup"]: (r["ts"], r["received_at"]) for r in stored}
    for r in first:
        key = prepare(r, "t")[1][4]
        assert got[key] == (datetime.fromtimestamp(0, UTC) + timedelta(milliseconds=r.ts_ms),
                            datetime.fromtimestamp(0, UTC) + timedelta(milliseconds=r.received_ms))
    again = [reading("st1", s) for s in (2, 3, 4)]  # 2 and 3 are stored already
    assert await store.write(prepare_many(again, "t")[1], [], []) == 1
    assert store._staged_writes == STAGED_AFTER_CONFLICT
    assert await store.write(prepare_many([reading("st1", 5)], "t")[1], [], []) == 1  # staged: one less to go
    assert store._staged_writes == STAGED_AFTER_CONFLICT - 1
    rows = await pool.fetch("SELECT seq FROM readings WHERE device_id = 'st1' ORDER BY seq")
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
    assert isinstance(await pool.fetchval("SELECT max(ts) FROM readings"), datetime)


async def test_store_mixes_timed_and_untimed_rows(pool: asyncpg.Pool) -> None:
    store = ReadingStore(pool, untimed_window_ms=60_000)
    untimed_r = Reading("mx1", Kind.smoke, Event.heartbeat, T0, T0, 8, {}, untimed=True)
    rows = prepare_many([reading("mx1", 1), untimed_r, reading("mx1", None)], "t")[1]
    assert [is_untimed_row(row) for row in rows] == [False, True, False]
    assert await store.write(rows, [], []) == 3
    # received again 5 s later
    resent = Reading("mx1", Kind.smoke, Event.heartbeat, T0 + 5000, T0 + 5000, 8, {}, untimed=True)
    assert await store.write(prepare_many([resent, reading("mx1", 2)], "t")[1], [], []) == 1
    assert await pool.fetchval("SELECT count(*) FROM readings WHERE device_id = 'mx1'") == 4

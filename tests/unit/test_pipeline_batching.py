"""The tel lane's group commit: a lone submission goes at once to an idle writer, what arrives
during a write is batched together, by count or at most `batch_ms`; nothing is acknowledged
before its write commits."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from prometheus_client import CollectorRegistry

from devices.fleet import Fleet
from devices.kinds import Event, Kind
from devices.reading import Reading
from ingest.metrics import IngestMetrics
from ingest.pipeline import Pipeline, Submission
from ingest.storage import ReadingStore

T0 = 1_795_341_600_000


def _pipeline(batch_max: int, batch_ms: int) -> Pipeline:
    return Pipeline(fleet=Fleet(), store=ReadingStore(None), on_batch=None,  # type: ignore[arg-type]  # not reached
                    metrics=IngestMetrics(CollectorRegistry()), batch_max=batch_max, batch_ms=batch_ms)


def _sub(n: int) -> Submission:
    readings = [Reading(f"d{i}", Kind.smoke, Event.heartbeat, T0 + i, T0) for i in range(n)]
    return Submission(readings, "mqtt", "s", asyncio.get_running_loop().create_future())


def test_fill_stops_at_batch_max_and_leaves_the_rest_queued() -> None:
    async def run() -> None:
        p = _pipeline(batch_max=5, batch_ms=1000)
        queue: asyncio.Queue[Submission] = asyncio.Queue()
        subs = [_sub(2) for _ in range(4)]
        for s in subs[1:]:
            queue.put_nowait(s)
        batch = [subs[0]]
        assert await asyncio.wait_for(p._fill(queue, batch, 2), 1) == 6
        assert batch == subs[:3] and queue.qsize() == 1

    asyncio.run(run())


def test_fill_while_a_write_is_in_flight_takes_what_arrives_within_batch_ms_and_nothing_after() -> None:
    async def run() -> None:
        p = _pipeline(batch_max=1000, batch_ms=50)
        p.writer_idle.clear()  # a write in flight that never ends (PostgreSQL down): batch_ms bounds the wait
        early, late = await _submitter(p, 0.01), await _submitter(p, 0.5)
        batch = [_sub(1)]
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await p._fill(p.lanes["tel"], batch, 1) == 2
        assert 0.04 <= loop.time() - started < 0.45 and batch[1].readings == early.result()
        await late
        assert p.lanes["tel"].qsize() == 1  # the late one stays queued for the next batch

    asyncio.run(run())


def test_fill_with_an_idle_writer_answers_at_once() -> None:
    async def run() -> None:
        p = _pipeline(batch_max=1000, batch_ms=5000)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await p._fill(p.lanes["tel"], [_sub(1)], 1) == 1
        assert loop.time() - started < 0.5

    asyncio.run(run())


async def _submitter(p: Pipeline, after_s: float) -> asyncio.Task[list[Reading]]:
    """Submit one reading on `tel` after `after_s`; the task answers the readings submitted."""
    async def submit() -> list[Reading]:
        await asyncio.sleep(after_s)
        readings = _sub(1).readings
        await p.submit(readings, lane="tel", transport="mqtt", source="s")
        return readings

    return asyncio.create_task(submit())


class HeldStore:
    """Records each write's rows and holds it until the test releases it (a slow commit)."""

    def __init__(self) -> None:
        self.writes: list[list[tuple[Any, ...]]] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.untimed_window_ms = 0

    async def write(self, rows: list[tuple[Any, ...]], new_devices: list[Any], dead_letters: list[Any]) -> int:
        self.writes.append(rows)
        self.started.set()
        await self.release.wait()
        self.release.clear()
        return len(rows)


async def _no_decisions(readings: list[Reading], columns: object) -> None:
    return None


def test_group_commit_writes_a_lone_submission_at_once_and_batches_what_arrives_during_the_write() -> None:
    async def run() -> None:
        fleet = Fleet()
        for i in range(4):
            fleet.upsert(f"g{i}", Kind.smoke)
        store = HeldStore()
        p = Pipeline(fleet=fleet, store=store, on_batch=_no_decisions,  # type: ignore[arg-type]
                     metrics=IngestMetrics(CollectorRegistry()), batch_max=1000, batch_ms=10_000)
        task = asyncio.create_task(p.run())
        loop = asyncio.get_running_loop()

        def reading(i: int) -> list[Reading]:
            return [Reading(f"g{i}", Kind.smoke, Event.heartbeat, T0 + i, T0)]

        started = loop.time()
        first = await p.submit(reading(0), lane="tel", transport="mqtt", source="s")
        await asyncio.wait_for(store.started.wait(), 1)
        assert loop.time() - started < 1  # not the 10 s batch timer
        assert [row[0] for row in store.writes[0]] == ["g0"]
        store.started.clear()
        more = [await p.submit(reading(i), lane="tel", transport="mqtt", source="s") for i in (1, 2, 3)]
        await asyncio.sleep(0.05)
        assert len(store.writes) == 1 and not first.done()  # nothing acknowledged before its commit
        store.release.set()
        await asyncio.wait_for(first, 1)
        await asyncio.wait_for(store.started.wait(), 1)
        assert [row[0] for row in store.writes[1]] == ["g1", "g2", "g3"]  # one write for the three
        assert not any(f.done() for f in more)
        store.release.set()
        await asyncio.wait_for(asyncio.gather(*more), 1)
        assert len(store.writes) == 2 and p.writer_idle.is_set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(run())

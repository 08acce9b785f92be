"""The tel lane's micro-batches: by count or by time from the first submission, nothing lost."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from devices.fleet import Fleet
from devices.kinds import Event, Kind
from devices.reading import Reading
from ingest.metrics import IngestMetrics
from ingest.pipeline import Pipeline, Submission
from ingest.storage import ReadingStore

T0 = 1_795_341_600_000


def _pipeline(batch_max: int, batch_ms: int) -> Pipeline:
    return Pipeline(fleet=Fleet(), store=ReadingStore(None), on_batch=None,  # type: ignore[arg-type] - not reached
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
        assert await asyncio.wait_for(p._fill(queue, batch, 2), 1) == 6  # noqa: SLF001
        assert batch == subs[:3] and queue.qsize() == 1

    asyncio.run(run())


def test_fill_takes_what_arrives_within_the_window_and_nothing_after() -> None:
    async def run() -> None:
        p = _pipeline(batch_max=1000, batch_ms=50)
        queue: asyncio.Queue[Submission] = asyncio.Queue()
        early, late = _sub(1), _sub(1)
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, queue.put_nowait, early)
        loop.call_later(0.5, queue.put_nowait, late)
        batch = [_sub(1)]
        started = loop.time()
        assert await p._fill(queue, batch, 1) == 2  # noqa: SLF001
        assert 0.04 <= loop.time() - started < 0.45 and batch[1] is early
        assert await asyncio.wait_for(queue.get(), 1) is late  # the get the timer cut off took nothing

    asyncio.run(run())

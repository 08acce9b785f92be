"""The alarm stream hub: fan-out, region scoping, resume from buffer and from the replay source,
cut-off of slow subscribers, heartbeats. The replay source is an in-memory event log here;
the integration tests use the real `alarm_events` table."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from alerting.stream import AlarmHub, StreamEvent


class EventLog:
    """An append-only log standing in for `alarm_events`: what a hub replays from."""

    def __init__(self) -> None:
        self.events: list[StreamEvent] = []
        self.queries = 0

    async def load(self, after: int, limit: int) -> list[StreamEvent]:
        self.queries += 1
        await asyncio.sleep(0)  # a real query yields to the loop
        return [e for e in self.events if (e.event_id or 0) > after][:limit]


def alarm(n: int, region: str = "江西省/赣州市/章贡区") -> dict[str, object]:
    return {"alarm_id": str(n), "region": region, "count": n}


def write(hub: AlarmHub, log: EventLog, event_id: int, region: str = "江西省/赣州市/章贡区") -> None:
    """What the lifecycle does: commit (append to the log), then publish."""
    log.events.append(StreamEvent(event_id, "alarm", alarm(event_id, region)))
    hub.publish(event_id, alarm(event_id, region))


def everywhere(region: str | None) -> bool:
    return True


async def take(events: AsyncIterator[StreamEvent | None], n: int, timeout: float = 2.0) -> list[int | None]:
    got: list[int | None] = []
    async with asyncio.timeout(timeout):
        async for e in events:
            if e is not None:
                got.append(e.event_id)
                if len(got) == n:
                    break
    return got


async def test_live_events_in_order_and_scoped_by_region() -> None:
    log = EventLog()
    hub = AlarmHub(log.load, heartbeat_s=5)
    all_events = hub.events(everywhere)
    ganzhou = hub.events(lambda r: (r or "").startswith("江西省/赣州市"))
    first_all = asyncio.create_task(take(all_events, 4))
    first_gz = asyncio.create_task(take(ganzhou, 2))
    await asyncio.sleep(0.01)  # both subscribed
    write(hub, log, 1)
    write(hub, log, 2, "江西省/南昌市/东湖区")
    write(hub, log, 3)
    write(hub, log, 4, "浙江省/杭州市")
    assert await first_all == [1, 2, 3, 4]
    assert await first_gz == [1, 3]
    await all_events.aclose()
    await ganzhou.aclose()
    assert not hub.subscribers


async def test_resume_from_buffer_gives_exactly_the_missed_events() -> None:
    log = EventLog()
    hub = AlarmHub(log.load, buffer_size=100)
    for i in (3, 5, 6, 9):  # identity columns leave gaps
        write(hub, log, i)
    resumed = hub.events(everywhere, last_event_id=5)
    got = asyncio.create_task(take(resumed, 3))
    await asyncio.sleep(0.01)
    write(hub, log, 10)
    assert await got == [6, 9, 10]
    assert log.queries == 0  # the buffer covered it
    await resumed.aclose()


async def test_resume_older_than_buffer_pages_through_the_log() -> None:
    log = EventLog()
    hub = AlarmHub(log.load, buffer_size=5, replay_page=4)
    for i in range(1, 31):
        write(hub, log, i)
    assert [e.event_id for e in hub.recent] == [26, 27, 28, 29, 30]
    resumed = hub.events(everywhere, last_event_id=7)
    assert await take(resumed, 23) == list(range(8, 31))
    assert log.queries >= 6  # pages of 4
    await resumed.aclose()


async def test_events_published_during_replay_arrive_once() -> None:
    log = EventLog()
    hub = AlarmHub(log.load, buffer_size=2, replay_page=3)
    for i in range(1, 11):
        write(hub, log, i)

    async def writer() -> None:
        for i in range(11, 21):
            write(hub, log, i)
            await asyncio.sleep(0)

    resumed = hub.events(everywhere, last_event_id=0)
    reading = asyncio.create_task(take(resumed, 20))
    await asyncio.sleep(0)
    await writer()
    assert await reading == list(range(1, 21))
    await resumed.aclose()


async def test_slow_subscriber_is_cut_off_without_stalling_others() -> None:
    log = EventLog()
    hub = AlarmHub(log.load, queue_size=8)
    async with hub.subscribe(everywhere) as slow:
        fast = hub.events(everywhere)
        received = asyncio.create_task(take(fast, 50))
        await asyncio.sleep(0.01)
        for i in range(1, 51):
            write(hub, log, i)  # never waits, whatever the slow one does
            if i % 4 == 0:
                await asyncio.sleep(0.002)  # the fast one keeps up with bursts of 4
        assert await received == list(range(1, 51))
        assert slow.cut_off and slow not in hub.subscribers
        assert slow.queue.get_nowait() is None  # its stream ends; the client resumes from its last id
        await fast.aclose()


async def test_cut_off_stream_ends_and_resume_fills_the_gap() -> None:
    log = EventLog()
    hub = AlarmHub(log.load, queue_size=4, buffer_size=100)
    events = hub.events(everywhere)
    first = await asyncio.wait_for(_next_after_publish(hub, log, events), 2)
    assert first == 1
    for i in range(2, 12):
        write(hub, log, i)  # the consumer is not reading: cut off after 4 queued
    rest = [e.event_id async for e in events if e is not None]
    assert rest == []  # the queue was emptied and the stream ended
    assert await take(hub.events(everywhere, last_event_id=1), 10) == list(range(2, 12))


async def _next_after_publish(hub: AlarmHub, log: EventLog, events: AsyncIterator[StreamEvent | None]) -> int | None:
    task = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0.01)
    write(hub, log, 1)
    event = await task
    assert event is not None
    return event.event_id


async def test_heartbeat_when_idle_and_pending_events_unbuffered() -> None:
    log = EventLog()
    hub = AlarmHub(log.load, heartbeat_s=0.05)
    events = hub.events(everywhere)
    assert await asyncio.wait_for(anext(events), 1) is None  # idle: a keep-alive
    hub.publish_pending({"alarm_id": None, "region": "", "type": "smoke"})
    pending = await asyncio.wait_for(anext(events), 1)
    assert pending is not None and pending.event_id is None and pending.event == "alarm_pending"
    assert not hub.recent
    await events.aclose()


@pytest.mark.parametrize("last", [None, 0])
async def test_unsubscribed_when_consumer_is_cancelled(last: int | None) -> None:
    log = EventLog()
    hub = AlarmHub(log.load)
    events = hub.events(everywhere, last)
    task = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0.01)
    assert len(hub.subscribers) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not hub.subscribers


async def test_close_ends_live_streams_and_refuses_new_ones() -> None:
    log = EventLog()
    hub = AlarmHub(log.load, heartbeat_s=5)
    live = hub.events(everywhere)
    pending = asyncio.ensure_future(anext(live))
    await asyncio.sleep(0.01)
    hub.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, 1)
    late = hub.events(everywhere)
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(late), 1)
    assert not hub.subscribers

"""A resume point ahead of every event the hub knows (a Last-Event-ID kept from another
database, or made up) resumes from now: live events follow instead of a silent stream."""

from __future__ import annotations

import asyncio

from alerting.stream import AlarmHub, StreamEvent


def alarm(n: int) -> dict[str, object]:
    return {"alarm_id": str(n), "region": "江西省/赣州市", "count": n}


async def test_an_id_from_the_future_resumes_from_now() -> None:
    log: list[StreamEvent] = []

    async def load(after: int, limit: int) -> list[StreamEvent]:
        return [e for e in log if (e.event_id or 0) > after][:limit]

    hub = AlarmHub(load, heartbeat_s=0.05)
    for i in (1, 2, 3):
        log.append(StreamEvent(i, "alarm", alarm(i)))
        hub.publish(i, alarm(i))
    events = hub.events(lambda region: True, last_event_id=10**15)
    first = asyncio.create_task(anext(events))
    while not hub.subscribers:
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    log.append(StreamEvent(4, "alarm", alarm(4)))
    hub.publish(4, alarm(4))
    got = await asyncio.wait_for(first, 2)
    while got is None:  # keep-alives while nothing happens
        got = await asyncio.wait_for(anext(events), 2)
    assert got.event_id == 4
    await events.aclose()


async def test_an_id_that_is_the_newest_still_dedupes() -> None:
    async def load(after: int, limit: int) -> list[StreamEvent]:
        return []

    hub = AlarmHub(load, heartbeat_s=0.05)
    hub.publish(5, alarm(5))
    events = hub.events(lambda region: True, last_event_id=5)
    nxt = asyncio.create_task(anext(events))
    while not hub.subscribers:
        await asyncio.sleep(0)
    hub.publish(6, alarm(6))
    got = await asyncio.wait_for(nxt, 2)
    assert got is not None and got.event_id == 6
    await events.aclose()

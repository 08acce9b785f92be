"""AlarmHub following the database: events of other processes and skipped ids come out in id order."""

from __future__ import annotations

import asyncio

from alerting.stream import AlarmHub, StreamEvent


def hub_over(committed: list[int]) -> AlarmHub:
    async def replay(after: int, limit: int) -> list[StreamEvent]:
        return [StreamEvent(i, "alarm", {"n": i}) for i in committed if i > after][:limit]

    return AlarmHub(replay, replay_page=2)


async def test_a_commit_that_skips_ids_waits_for_the_missing_events_in_order() -> None:
    committed = [3, 5]
    hub = hub_over(committed)
    hub.start_following(3)  # 3 is history
    async with hub.subscribe(lambda _region: True) as sub:
        catching_up = asyncio.create_task(hub.catch_up())
        committed += [6, 8, 9]  # 6 and 9 by another process, 8 by this one; 7 rolled back
        hub.publish(8, {"n": 8})
        assert [e.event_id for e in hub.recent] == []  # not before 5 and 6
        await asyncio.sleep(0.01)
        hub.publish(10, {"n": 10})  # 10 follows 9 (already fetched) ... only once committed ids are read
        committed.append(10)
        hub.committed(10)
        await asyncio.sleep(0.01)
        hub.publish(9, {"n": 9})  # already published from the database: ignored
        hub.publish(11, {"n": 11})  # contiguous: at once
        catching_up.cancel()
        got = [sub.queue.get_nowait().event_id for _ in range(sub.queue.qsize())]  # type: ignore[union-attr]
    assert got == [5, 6, 8, 9, 10, 11]


async def test_a_hub_that_does_not_follow_publishes_its_own_commits_at_once() -> None:
    hub = hub_over([])
    hub.publish(4, {})
    hub.publish(9, {})
    hub.publish(7, {})  # older than the last one published: a duplicate
    assert [e.event_id for e in hub.recent] == [4, 9]

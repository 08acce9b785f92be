"""The alarm stream hub: every alarm change fanned out to live subscribers (SSE, WebSocket).

Each subscriber has one bounded queue; `publish` never waits, and a subscriber whose queue is
full is cut off (its stream ends, the client reconnects with its last event id) so one slow
client can never stall the hub or the others. Recent events stay in a bounded in-memory buffer;
a resume from an older id pages through `alarm_events` in the database first, so a client that
reconnects with `Last-Event-ID` gets exactly the events it missed, in order.

Event ids are `alarm_events.event_id`, fanned out in strictly increasing order. Every alarm
writer, in any process, takes one advisory lock before writing (migrations/0004), so ids commit
in increasing order: once id N is committed, every smaller id that will ever exist is too. A hub
that follows the database (`alerting.listen.follow`: LISTEN on a dedicated connection) also
publishes the events of other processes: a NOTIFY, or a commit of its own that skips ids, makes
it fetch every event after the last one it published from `alarm_events`, in id order; what it
already published is skipped. A hub that does not follow publishes its own commits as they come
(one process: the lifecycle commits and publishes under one lock). A subscriber that asked for a
resume drops live events it already got from the replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from alerting.metrics import AlarmMetrics


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One stream message. `event_id` is None only for `alarm_pending`: an alarm decided while
    the database was unavailable, shown at once and followed by its real event once written."""

    event_id: int | None
    event: str  # "alarm" or "alarm_pending"
    data: dict[str, Any]

    @property
    def region(self) -> str:
        return str(self.data.get("region") or "")


#: Events with an id greater than the first argument, in id order, at most the second argument of them.
ReplaySource = Callable[[int, int], Awaitable[list[StreamEvent]]]
RegionFilter = Callable[[str | None], bool]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def db_replay(pool: asyncpg.Pool) -> ReplaySource:
    """A replay source reading the snapshots of `alarm_events`."""

    async def load(after: int, limit: int) -> list[StreamEvent]:
        rows = await pool.fetch(
            "SELECT event_id, snapshot FROM alarm_events WHERE event_id > $1 ORDER BY event_id LIMIT $2", after, limit
        )
        return [StreamEvent(r["event_id"], "alarm", _json(r["snapshot"])) for r in rows]

    return load


class Subscription:
    """One subscriber: a bounded queue; None in it means "cut off, stop"."""

    def __init__(self, sees: RegionFilter, maxsize: int) -> None:
        self.sees = sees
        self.queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue(maxsize)
        self.cut_off = False


class AlarmHub:
    def __init__(
        self,
        replay: ReplaySource,
        *,
        buffer_size: int = 10_000,
        queue_size: int = 1_000,
        replay_page: int = 1_000,
        heartbeat_s: float = 15.0,
        metrics: AlarmMetrics | None = None,
    ) -> None:
        self.replay_source = replay
        self.recent: deque[StreamEvent] = deque(maxlen=buffer_size)
        self.queue_size = queue_size
        self.replay_page = replay_page
        self.heartbeat_s = heartbeat_s
        self.metrics = metrics
        self.subscribers: set[Subscription] = set()
        self.closed = False
        #: Id of the newest event fanned out (None: none yet).
        self.last_id: int | None = None
        self.following = False
        self._newest_committed = 0
        self._behind = asyncio.Event()

    def close(self) -> None:
        """End every live stream and refuse new ones: the server is shutting down, and open
        streams would otherwise hold its graceful shutdown forever. Clients resume elsewhere."""
        self.closed = True
        for sub in list(self.subscribers):
            self._cut_off(sub, slow=False)

    # --- producers -------------------------------------------------------------------------
    def publish(self, event_id: int, alarm: dict[str, Any]) -> None:
        """Fan out one alarm change committed by this process. Never waits: a subscriber that
        cannot take it is cut off. When following and ids were skipped (another process's
        events, or a rolled-back write), the change is fetched in order with the missing ones."""
        last = self.last_id
        if last is not None and event_id <= last:
            return  # already published from the database
        if self.following and last is not None and event_id != last + 1:
            self.committed(event_id)
            return
        self._emit(StreamEvent(event_id, "alarm", alarm))

    def committed(self, event_id: int) -> None:
        """Events up to `event_id` are committed (a NOTIFY, or a commit of this process)."""
        if self.last_id is None or event_id > self.last_id:
            self._newest_committed = max(self._newest_committed, event_id)
            self._behind.set()

    def start_following(self, newest_committed: int) -> None:
        """From now on events of other processes count; older ones are history (replayed on resume)."""
        if self.last_id is None:
            self.last_id = newest_committed
        self.following = True
        self.committed(newest_committed)

    async def catch_up(self) -> None:
        """Wait until behind the database, then publish every committed event after `last_id`
        in id order; repeat until cancelled. A failed read raises (call again to retry)."""
        while True:
            await self._behind.wait()
            self._behind.clear()
            while self.last_id is not None and self.last_id < self._newest_committed:
                try:
                    page = await self.replay_source(self.last_id, self.replay_page)
                except BaseException:
                    self._behind.set()  # still behind: the next call looks again
                    raise
                for event in page:
                    if event.event_id is not None and event.event_id > (self.last_id or 0):
                        self._emit(event)
                if len(page) < self.replay_page:
                    break

    def _emit(self, event: StreamEvent) -> None:
        self.last_id = event.event_id
        self.recent.append(event)
        self._fan_out(event)

    def publish_pending(self, data: dict[str, Any]) -> None:
        """Show an alarm the database could not take yet (no id: it is not replayed)."""
        self._fan_out(StreamEvent(None, "alarm_pending", data))

    def _fan_out(self, event: StreamEvent) -> None:
        for sub in list(self.subscribers):
            if not sub.sees(event.region):
                continue
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                self._cut_off(sub)

    def _cut_off(self, sub: Subscription, *, slow: bool = True) -> None:
        sub.cut_off = True
        self.subscribers.discard(sub)
        while not sub.queue.empty():
            sub.queue.get_nowait()
        sub.queue.put_nowait(None)
        if self.metrics:
            if slow:
                self.metrics.cut_off.inc()
            self.metrics.subscribers.set(len(self.subscribers))

    # --- consumers -------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def subscribe(self, sees: RegionFilter) -> AsyncIterator[Subscription]:
        sub = Subscription(sees, self.queue_size)
        if self.closed:
            sub.queue.put_nowait(None)
        else:
            self.subscribers.add(sub)
        if self.metrics:
            self.metrics.subscribers.set(len(self.subscribers))
        try:
            yield sub
        finally:
            self.subscribers.discard(sub)
            if self.metrics:
                self.metrics.subscribers.set(len(self.subscribers))

    async def events(self, sees: RegionFilter, last_event_id: int | None = None) -> AsyncIterator[StreamEvent | None]:
        """The events after `last_event_id` (none when it is None), then live ones, in id order.

        Yields None after `heartbeat_s` without events (the caller sends a keep-alive). Ends
        when the subscriber is cut off; the client resumes from its last event id. An id ahead
        of the newest event known (fanned out or committed) resumes from now: live events
        follow although their ids are smaller.
        """
        async with self.subscribe(sees) as sub:
            newest = max(self.last_id or 0, self._newest_committed)
            last = last_event_id
            if last is not None:
                async for replayed in self._replay(last):
                    last = replayed.event_id
                    if sees(replayed.region):
                        yield replayed
                if last is not None and last == last_event_id and last > newest and self.last_id is not None:
                    last = newest  # nothing replayed, from the future: every event after those known is new
            while True:
                try:
                    async with asyncio.timeout(self.heartbeat_s):
                        event = await sub.queue.get()
                except TimeoutError:
                    yield None
                    continue
                if event is None:
                    return
                if event.event_id is not None:
                    if last is not None and event.event_id <= last:
                        continue  # already replayed
                    last = event.event_id
                yield event

    async def _replay(self, after: int) -> AsyncIterator[StreamEvent]:
        if not self.recent or after < (self.recent[0].event_id or 0):
            while True:  # older than the buffer: the database has everything committed
                page = await self.replay_source(after, self.replay_page)
                for event in page:
                    after = event.event_id or after
                    yield event
                if len(page) < self.replay_page:
                    break
        for event in [e for e in self.recent if (e.event_id or 0) > after]:
            yield event

"""Follow `alarm_events` across processes: LISTEN on a dedicated connection (not from the pool).

The `alarm_events_notify` trigger (migrations/0004) sends NOTIFY `mx_alarm_events` with the
newest event id of each write, at commit. `follow` keeps one connection listening (reconnecting
with backoff) and tells the hub which ids are committed; the hub fetches and publishes them in
id order (`AlarmHub.catch_up`, through the pool). After a reconnect it catches up on whatever
was committed while it was not listening, so live subscribers still see no gap.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import asyncpg

from alerting.stream import AlarmHub
from devices.db_errors import UNAVAILABLE

log = logging.getLogger(__name__)

CHANNEL = "mx_alarm_events"
_NEWEST = "SELECT coalesce(max(event_id), 0) FROM alarm_events"


async def follow(hub: AlarmHub, dsn: str, *, retry_max_s: float = 5.0) -> None:
    """Until cancelled: the LISTEN connection, and the hub's catch-up with retries."""
    async with asyncio.TaskGroup() as tg:
        tg.create_task(_listen(hub, dsn, retry_max_s))
        tg.create_task(_catch_up(hub, retry_max_s))


def _on_notify(hub: AlarmHub) -> Callable[[object, int, str, str], None]:
    def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        if payload.isdigit():
            hub.committed(int(payload))

    return on_notify


async def _listen(hub: AlarmHub, dsn: str, retry_max_s: float) -> None:
    delay = 0.1
    while True:
        conn: asyncpg.Connection | None = None
        try:
            conn = await asyncpg.connect(dsn)
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _c, lost=lost: lost.set())  # this connection's event
            await conn.add_listener(CHANNEL, _on_notify(hub))
            hub.start_following(await conn.fetchval(_NEWEST))  # listening first: nothing slips between
            delay = 0.1
            while not lost.is_set() and not conn.is_closed():
                try:
                    async with asyncio.timeout(5):
                        await lost.wait()
                except TimeoutError:
                    await conn.execute("SELECT 1")  # find a silently dead connection
            log.warning("alarm event listener lost its connection; reconnecting")
        except (*UNAVAILABLE, asyncpg.PostgresError) as e:  # never a reason to stop the service
            log.warning("alarm event listener cannot listen (%s); retrying in %.1f s", e, delay)
        finally:
            if conn is not None and not conn.is_closed():
                conn.terminate()  # never waits on, nor raises from, a connection already lost
        await asyncio.sleep(delay)
        delay = min(delay * 2, retry_max_s)


async def _catch_up(hub: AlarmHub, retry_max_s: float) -> None:
    while True:
        try:
            await hub.catch_up()
        except (*UNAVAILABLE, asyncpg.PostgresError) as e:
            log.warning("cannot read alarm events for the stream (%s); retrying", e)
            await asyncio.sleep(retry_max_s / 5)

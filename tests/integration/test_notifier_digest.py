"""Digests under a storm (CONTRACT §9, issue 17): the notifier claims all of a recipient's due
rows together, so 50 verify alarms for one responder within the hold are one message at once and
one digest carrying the other 49 rows, and with many responders each gets its digest when its
hold ends (a short `digest_s`, real local receivers, real PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import uvicorn

from alerting.model import AlarmType
from miaoxiang.embedded import free_port
from tests.integration.test_response_delivery import (  # noqa: F401 (pool: a fixture)
    T0,
    Clock,
    Receiver,
    channel,
    decision,
    pool,
    responder,
    running,
    sent,
)
from tests.service import wait_for

pytestmark = pytest.mark.integration
DIGEST_S = 2.0


class Timed(Receiver):
    """The test receiver, noting when each request arrived (monotonic seconds), by path."""

    def __init__(self) -> None:
        super().__init__()
        self.at: dict[str, list[float]] = defaultdict(list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.at[scope["path"]].append(time.monotonic())
        await super().__call__(scope, receive, send)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Timed, str]]:
    app = Timed()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            await asyncio.sleep(0.01)
    yield app, f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


def storm(n: int, start: int = 0) -> list[Any]:
    return [decision(T0 + i, f"E{i}", AlarmType.residual_current, rule="residual_current_300ma")
            for i in range(start, start + n)]


async def test_fifty_verify_alarms_for_one_responder_are_one_message_and_one_digest_of_the_other_49(
    pool: asyncpg.Pool, receiver: tuple[Timed, str]  # noqa: F811
) -> None:
    rx, url = receiver
    await channel(pool, "uc-hook", f"{url}/ok/uc")
    await responder(pool, "uc", "unit_contact", ["uc-hook"], units=["U1"])
    async with running(pool, Clock(T0), digest_s=DIGEST_S) as lc:
        await lc.handle(storm(1))
        await wait_for(lambda: sent(pool, 1))  # a message at once
        for d in storm(49, start=1):  # within its hold
            await lc.handle([d])
        await wait_for(lambda: sent(pool, 50), timeout=15)
    times = rx.at["/ok/uc"]
    assert len(rx.calls) == len(times) == 2
    first, digest = (body for _, body, _ in rx.calls)
    carriers = await pool.fetch("SELECT id FROM notifications WHERE digest_of IS NULL ORDER BY id")
    # a message is known by the newest row it carries (a resend with rows added since is a new message)
    newest = await pool.fetchval("SELECT max(id) FROM notifications WHERE id = $1 OR digest_of = $1",
                                 carriers[1]["id"])
    assert [first["notification_id"], digest["notification_id"]] == [str(carriers[0]["id"]), str(newest)]
    assert newest > carriers[1]["id"]
    riders = await pool.fetchval("SELECT count(*) FROM notifications WHERE digest_of = $1", carriers[1]["id"])
    assert riders == 48  # the digest's own row and 48 more: the other 49 alarms
    assert await pool.fetchval("SELECT count(*) FROM notifications WHERE state = 'sent'") == 50
    assert await pool.fetchval("SELECT count(*) FROM notification_sends") == 2
    assert DIGEST_S - 0.2 <= times[1] - times[0] <= DIGEST_S + 1.5  # held until the first message + digest_s


async def test_many_responders_each_get_one_digest_when_their_hold_ends(
    pool: asyncpg.Pool, receiver: tuple[Timed, str]  # noqa: F811
) -> None:
    rx, url = receiver
    n = 40
    for i in range(n):
        await channel(pool, f"hook-{i}", f"{url}/ok/r{i}")
        await responder(pool, f"r{i}", "unit_contact", [f"hook-{i}"], units=["U1"])
    async with running(pool, Clock(T0), digest_s=DIGEST_S) as lc:
        await lc.handle(storm(1))
        await wait_for(lambda: sent(pool, n))  # each responder a message at once
        for d in storm(29, start=1):  # 29 alarms x 40 responders within the hold
            await lc.handle([d])
        assert await pool.fetchval("SELECT count(*) FROM notifications") == 30 * n
        await wait_for(lambda: sent(pool, 30 * n), timeout=30)
    assert sorted(rx.at) == sorted(f"/ok/r{i}" for i in range(n))
    for path, times in rx.at.items():
        assert len(times) == 2, path  # the message at once, one digest of the other 29
        assert DIGEST_S - 0.2 <= times[1] - times[0] <= DIGEST_S + 3, (path, times)  # a loaded machine: slack
    per_message = await pool.fetch("""SELECT coalesce(digest_of, id) AS m, count(*) AS n FROM notifications
                                       GROUP BY 1 ORDER BY 2""")
    assert [r["n"] for r in per_message] == [1] * n + [29] * n

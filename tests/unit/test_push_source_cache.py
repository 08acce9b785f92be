"""The push-source cache: no query within the TTL, a change or deletion seen once it has passed,
one shared query for concurrent requests, unknown names never cached."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import asyncpg
import pytest

from ingest.transports.http_push import PushSource, SourceCache


class Table:
    """push_sources as a dict, counting the queries made (`fetchrow` of asyncpg.Pool)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.queries = 0
        self.gate: asyncio.Event | None = None

    async def fetchrow(self, _sql: str, name: str) -> dict[str, Any] | None:
        self.queries += 1
        if self.gate is not None:
            await self.gate.wait()
        return self.rows.get(name)

    def put(self, name: str, secret: str) -> None:
        self.rows[name] = {"name": name, "platform": "ctwing", "secret": secret, "tenant": "default",
                           "profile": None, "rate_per_s": 100.0}


async def _get(cache: SourceCache, table: Table, name: str) -> PushSource:
    """`cache.get`, typed as found (a None passes through as it is)."""
    return await cache.get(cast(asyncpg.Pool, table), name)  # type: ignore[return-value]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_source_is_read_once_per_ttl_and_changes_are_seen_after_it() -> None:
    async def run() -> None:
        table, clock = Table(), Clock()
        cache = SourceCache(ttl_s=1.0, clock=clock)
        table.put("ctw", "old")
        for _ in range(50):
            src = await _get(cache, table, "ctw")
            assert src is not None and src.secret == "old"
        assert table.queries == 1
        table.put("ctw", "new")  # another process changed it
        clock.now += 0.9
        assert (await _get(cache, table, "ctw")).secret == "old"
        clock.now += 0.2
        assert (await _get(cache, table, "ctw")).secret == "new"
        assert table.queries == 2
        del table.rows["ctw"]  # deleted
        clock.now += 1.1
        assert await _get(cache, table, "ctw") is None
        assert await _get(cache, table, "ctw") is None
        assert table.queries == 4  # a missing name is asked each time (not cached)
        table.put("ctw", "again")  # created: found at once
        assert (await _get(cache, table, "ctw")).secret == "again"

    asyncio.run(run())


def test_concurrent_requests_share_one_query_and_its_failure() -> None:
    async def run() -> None:
        table = Table()
        table.put("ctw", "s")
        table.gate = asyncio.Event()
        cache = SourceCache(ttl_s=1.0)
        waiting = [asyncio.create_task(_get(cache, table, "ctw")) for _ in range(20)]
        await asyncio.sleep(0.01)
        table.gate.set()
        assert {s.secret for s in await asyncio.gather(*waiting)} == {"s"}
        assert table.queries == 1 and not cache.loading

        class Down(Table):
            async def fetchrow(self, _sql: str, name: str) -> dict[str, Any] | None:
                self.queries += 1
                await asyncio.sleep(0.01)
                raise ConnectionRefusedError("down")

        down = Down()
        failing = [asyncio.create_task(_get(cache, down, "other")) for _ in range(5)]
        for task in failing:
            with pytest.raises(ConnectionRefusedError):
                await task
        assert down.queries == 1 and not cache.loading and "other" not in cache.entries

    asyncio.run(run())

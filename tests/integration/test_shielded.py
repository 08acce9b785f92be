"""Shielded panel points on real PostgreSQL (devices.shielded, migration 0023): GB/T 26875 status
words become shield events, `record` keeps them per point with since-times, a late change never
undoes a newer one, and the unit's risk counts the points shielded now."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import asyncpg

from alerting.risk_service import RiskService
from devices import shielded
from devices.fleet import Fleet
from devices.reading import Reading
from ingest.codecs.gb26875 import Command, Frame, frame_to_readings
from ingest.codecs.gb26875_appdata import AppData, ComponentStatus, encode_app_data

TZ = ZoneInfo("Asia/Shanghai")
SHIELD = 1 << 3


def status(addr: int, word: int, previous: int | None, at: datetime, source: int = 301) -> list[Reading]:
    """The readings of one component status word as the listener maps it (`at` in Shanghai time)."""
    obj = ComponentStatus(1, 1, 40, addr, word, f"{addr}号感烟", at)
    frame = Frame(1, (1, 0), at, source, 0, Command.send, encode_app_data(AppData(2, (obj,))))
    memory = None if previous is None else {f"1:1:{addr}": previous}
    return frame_to_readings(frame, received_ms=0, tz=TZ, previous=memory)


def utc(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, 1, hour - 8, minute, tzinfo=UTC)


def local(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, 1, hour, minute)


async def points(pool: asyncpg.Pool, device_id: str = "uitd-301") -> list[tuple[str, datetime, str]]:
    return [(r["component"], r["since"], r["description"]) for r in await shielded.open_points(pool, device_id)]


async def test_shields_are_kept_per_point_with_their_since_time(pool: asyncpg.Pool) -> None:
    assert await shielded.record(pool, status(7, 1, None, local(9))) == 0  # no shield: nothing written
    assert await shielded.record(pool, status(7, 1 | SHIELD, 1, local(9, 10))) == 1
    await shielded.record(pool, status(8, 1 | SHIELD, None, local(9, 20)))
    await shielded.record(pool, status(7, 1 | SHIELD, 1 | SHIELD, local(9, 30)))  # still shielded: since stays
    assert await points(pool) == [("1:1:7", utc(9, 10), "7号感烟"), ("1:1:8", utc(9, 20), "8号感烟")]

    await shielded.record(pool, status(8, 1, 1 | SHIELD, local(10)))
    assert await points(pool) == [("1:1:7", utc(9, 10), "7号感烟")]
    # shielded again later: a new since
    await shielded.record(pool, status(8, 1 | SHIELD, 1, local(11)))
    assert await points(pool) == [("1:1:7", utc(9, 10), "7号感烟"), ("1:1:8", utc(11), "8号感烟")]
    assert await points(pool, "uitd-302") == []


async def test_a_late_change_never_undoes_a_newer_one(pool: asyncpg.Pool) -> None:
    await shielded.record(pool, status(7, 1 | SHIELD, None, local(9)))
    await shielded.record(pool, status(7, 1, 1 | SHIELD, local(10)))  # lifted at 10:00
    await shielded.record(pool, status(7, 1 | SHIELD, 1, local(9, 30)))  # a backlog's older shield
    assert await points(pool) == []
    await shielded.record(pool, status(8, 1 | SHIELD, None, local(12)))
    await shielded.record(pool, status(8, 1, 1 | SHIELD, local(11)))  # an older clear
    assert await points(pool) == [("1:1:8", utc(12), "8号感烟")]


async def test_the_unit_s_risk_counts_its_shielded_points(pool: asyncpg.Pool) -> None:
    for unit in ("U1", "U2"):
        await pool.execute("INSERT INTO units (unit_id, name, region) VALUES ($1, $1, '江西省/赣州市')", unit)
    await pool.execute("INSERT INTO devices (device_id, kind, unit_id) VALUES ('uitd-301', 'uitd', 'U1'), "
                       "('uitd-302', 'uitd', 'U2'), ('uitd-303', 'uitd', NULL)")
    for source, addrs in ((301, (1, 2, 3)), (302, (1,)), (303, (1,))):
        for addr in addrs:
            await shielded.record(pool, status(addr, 1 | SHIELD, None, local(9), source=source))
    await shielded.record(pool, status(3, 1, 1 | SHIELD, local(10)))
    assert await shielded.points_per_unit(pool) == {"U1": 2, "U2": 1}

    risk = RiskService(pool, Fleet(), ttl_s=3600, wall=lambda: utc(12))
    table = await risk.table()
    assert [table.row(table.index[u], detail=True)["inputs"]["shielded_points"] for u in ("U1", "U2")] == [2, 1]

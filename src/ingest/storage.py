"""Durable writes of readings, quarantined devices and dead letters (asyncpg, one pool)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from devices.reading import Reading

READING_COLUMNS = (
    "device_id", "ts", "received_at", "seq", "dedup", "kind", "event", "component", "metrics", "extra", "source",
)


@dataclass(slots=True)
class DeadLetter:
    transport: str
    source: str
    reason: str
    raw: bytes
    received_ms: int


def ms_to_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def dedup_key(r: Reading) -> int:
    """A signed 63-bit identity of a report per (device, ts): built from seq when the device
    numbers its reports, else from its content, so a redelivered copy collides with the original."""
    if r.seq is not None:
        basis = f"s|{r.seq}|{r.component}|{int(r.event)}"
    else:
        basis = f"c|{r.component}|{int(r.event)}|" + json.dumps(r.metrics, sort_keys=True, default=str)
    return int.from_bytes(hashlib.blake2b(basis.encode(), digest_size=8).digest(), "big") >> 1


def reading_row(r: Reading, source: str) -> tuple[Any, ...]:
    return (
        r.device_id,
        ms_to_dt(r.ts_ms),
        ms_to_dt(r.received_ms),
        r.seq,
        dedup_key(r),
        r.kind.name,
        r.event.name,
        r.component,
        json.dumps(r.metrics, ensure_ascii=False),
        json.dumps(r.extra, ensure_ascii=False) if r.extra else None,
        source,
    )


class ReadingStore:
    """Writes batches idempotently: COPY into a session-local staging table, then one
    INSERT ... ON CONFLICT DO NOTHING, so COPY's speed survives redelivered duplicates."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def write(
        self,
        rows: list[tuple[Any, ...]],
        new_devices: list[tuple[str, str]],
        dead_letters: list[DeadLetter],
    ) -> int:
        """Write one flush in one transaction; answer how many readings were new."""
        async with self.pool.acquire() as conn, conn.transaction():
            if new_devices:
                await conn.executemany(
                    "INSERT INTO devices (device_id, kind, quarantined) VALUES ($1, $2, true) ON CONFLICT DO NOTHING",
                    new_devices,
                )
            if dead_letters:
                await conn.copy_records_to_table(
                    "dead_letters",
                    records=[(ms_to_dt(d.received_ms), d.transport, d.source, d.reason, d.raw) for d in dead_letters],
                    columns=("received_at", "transport", "source", "reason", "raw"),
                )
            if not rows:
                return 0
            await conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS readings_stage (LIKE readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            await conn.copy_records_to_table("readings_stage", records=rows, columns=READING_COLUMNS)
            status = await conn.execute(
                f"INSERT INTO readings ({', '.join(READING_COLUMNS)}) SELECT {', '.join(READING_COLUMNS)} "
                "FROM readings_stage ON CONFLICT DO NOTHING"
            )
            return int(status.rsplit(" ", 1)[-1])

    async def maintain_partitions(self, today: date, ahead_days: int, retention_days: int) -> tuple[int, int]:
        """Create the coming days' partitions and drop those past retention; answer (made, dropped)."""
        async with self.pool.acquire() as conn:
            made = await conn.fetchval("SELECT mx_ensure_readings_partitions($1, $2)", today - timedelta(days=1), ahead_days + 1)
            dropped = await conn.fetchval("SELECT mx_drop_readings_before($1)", today - timedelta(days=retention_days))
            return int(made), int(dropped)

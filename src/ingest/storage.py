"""Durable writes of readings, quarantined devices and dead letters (asyncpg, one pool)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from devices.reading import Reading

READING_COLUMNS = (
    "device_id", "ts", "received_at", "seq", "dedup", "kind", "event", "component", "metrics", "extra", "source",
)
#: Columns of a row as the pipeline hands it to `ReadingStore.write`: times as epoch ms (PostgreSQL
#: turns them into timestamptz, exactly, so no datetime is built per reading in Python), and
#: `untimed`: the report carried no device time of its own (see `identity`).
ROW_COLUMNS = (
    "device_id", "ts_ms", "received_ms", "seq", "dedup", "kind", "event", "component", "metrics", "extra", "source",
    "untimed",
)
_STAGE = "readings_stage_ms"
_CREATE_STAGE = f"""CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (
    device_id text, ts_ms bigint, received_ms bigint, seq bigint, dedup bigint, kind text, event text, component text,
    metrics jsonb, extra jsonb, source text, untimed boolean) ON COMMIT DELETE ROWS"""


def _ts(col: str) -> str:
    """SQL for the timestamptz of epoch-ms column `col`; exact (whole seconds and the milliseconds are
    scaled separately, each product exact in float8 for every time up to 9999-12-31)."""
    return f"(timestamptz 'epoch' + ({col} / 1000) * interval '1 second' + ({col} % 1000) * interval '1 millisecond')"


_SELECT = (
    f"SELECT s.device_id, {_ts('s.ts_ms')}, {_ts('s.received_ms')}, s.seq, s.dedup, s.kind, s.event, s.component, "
    f"s.metrics, s.extra, s.source FROM {_STAGE} s"
)
_INSERT = f"INSERT INTO readings ({', '.join(READING_COLUMNS)}) "
#: Timed rows: the unique index (device_id, ts, dedup) is the identity.
INSERT_TIMED = _INSERT + _SELECT + " WHERE NOT s.untimed ON CONFLICT DO NOTHING"
#: Untimed rows (a `seq` but no device time): their `ts` is a receive time, different for every
#: delivery, so a copy is also recognised by (device_id, dedup) within +-$1 ms of it.
INSERT_UNTIMED = _INSERT + _SELECT + (
    " WHERE s.untimed AND NOT EXISTS (SELECT 1 FROM readings r WHERE r.device_id = s.device_id AND r.dedup = s.dedup"
    f" AND r.ts BETWEEN {_ts('s.ts_ms')} - $1 * interval '1 millisecond' AND {_ts('s.ts_ms')} + $1 * interval '1 millisecond')"
    " ON CONFLICT DO NOTHING"
)
_SORTED = orjson.OPT_SORT_KEYS
MemoryKey = tuple[str, int, int]


@dataclass(slots=True)
class DeadLetter:
    transport: str
    source: str
    reason: str
    raw: bytes
    received_ms: int


def ms_to_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def canonical_json(value: dict[str, Any]) -> bytes:
    """One serialisation of a reading's metrics (or extra), keys sorted: both the content digest of
    the dedupe key and the JSON stored in PostgreSQL use it, so it is computed once per reading.
    orjson for speed; the standard library for what orjson refuses (an int beyond 64 bits, which
    `extra` keeps exactly)."""
    try:
        return orjson.dumps(value, option=_SORTED)
    except TypeError:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _digest(basis: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(basis, digest_size=8).digest(), "big") >> 1


def identity(r: Reading, metrics_json: bytes | None = None) -> tuple[MemoryKey, int, bool]:
    """(in-memory dedupe key, stored `dedup`, untimed) of a reading; a redelivered copy of a report
    gets the same identity as the original.

    - seq and a device time: (detector, ts, digest of seq/component/event);
    - seq, no device time (`ts_ms == received_ms`, see `ingest.codecs.values.receive_time`):
      (detector, -1, digest of "u"/seq/component/event), `untimed`: the receive time is no part of it;
    - no seq: (detector, ts, digest of component/event/metrics).
    `metrics_json` is `canonical_json(r.metrics)` when the caller has it already.
    """
    untimed = False
    if r.seq is not None:
        untimed = r.ts_ms == r.received_ms
        key = _digest(f"{'u' if untimed else 's'}|{r.seq}|{r.component}|{int(r.event)}".encode())
    else:
        if metrics_json is None:
            metrics_json = canonical_json(r.metrics)
        key = _digest(f"c|{r.component}|{int(r.event)}|".encode() + metrics_json)
    return (r.detector_id, -1 if untimed else r.ts_ms, key), key, untimed


def dedup_key(r: Reading) -> int:
    """The stored `dedup` of a reading (see `identity`)."""
    return identity(r)[1]


def prepare(r: Reading, source: str) -> tuple[MemoryKey, tuple[Any, ...]]:
    """(in-memory dedupe key, row in ROW_COLUMNS order) of one reading: its identity and its metrics
    JSON computed once each."""
    metrics_json = canonical_json(r.metrics)
    mem, key, untimed = identity(r, metrics_json)
    return mem, (
        r.device_id,
        r.ts_ms,
        r.received_ms,
        r.seq,
        key,
        r.kind.name,
        r.event.name,
        r.component,
        metrics_json.decode(),
        canonical_json(r.extra).decode() if r.extra else None,
        source,
        untimed,
    )


def reading_row(r: Reading, source: str) -> tuple[Any, ...]:
    """The row of one reading (ROW_COLUMNS order)."""
    return prepare(r, source)[1]


class ReadingStore:
    """Writes batches idempotently: COPY into a session-local staging table, then INSERT ... ON
    CONFLICT DO NOTHING, so COPY's speed survives redelivered duplicates."""

    def __init__(self, pool: asyncpg.Pool, *, untimed_window_ms: int = 600_000) -> None:
        self.pool = pool
        self.untimed_window_ms = untimed_window_ms

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
            await conn.execute(_CREATE_STAGE)
            await conn.copy_records_to_table(_STAGE, records=rows, columns=ROW_COLUMNS)
            written = 0
            if not all(row[11] for row in rows):
                written += _count(await conn.execute(INSERT_TIMED))
            if any(row[11] for row in rows):
                written += _count(await conn.execute(INSERT_UNTIMED, self.untimed_window_ms))
            return written

    async def maintain_partitions(self, today: date, ahead_days: int, retention_days: int) -> tuple[int, int]:
        """Create the coming days' partitions and drop those past retention; answer (made, dropped)."""
        async with self.pool.acquire() as conn:
            made = await conn.fetchval("SELECT mx_ensure_readings_partitions($1, $2)", today - timedelta(days=1), ahead_days + 1)
            dropped = await conn.fetchval("SELECT mx_drop_readings_before($1)", today - timedelta(days=retention_days))
            return int(made), int(dropped)


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])

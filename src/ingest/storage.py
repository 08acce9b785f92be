"""Durable writes of readings, quarantined devices and dead letters (asyncpg, one pool)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from devices.kinds import EVENT_NAMES, KIND_NAMES, Event
from devices.reading import Reading

READING_COLUMNS = (
    "device_id", "ts", "received_at", "seq", "dedup", "kind", "event", "component", "metrics", "extra", "source",
    "untimed",
)
#: Columns of a row as the pipeline hands it to `ReadingStore.write`: those of `readings`, the two
#: times as PostgreSQL's own binary timestamptz value (microseconds since 2000-01-01 UTC, see
#: `pg_time`), which COPY sends as they are: no datetime is built per reading, in Python or SQL.
ROW_COLUMNS = READING_COLUMNS
#: 1970-01-01 in microseconds since 2000-01-01, PostgreSQL's epoch for timestamps.
_PG_EPOCH_US = -946_684_800_000_000
_PG_EPOCH_DT = datetime(2000, 1, 1, tzinfo=UTC)
_I64 = struct.Struct(">q")
#: Flushes of up to this many readings go with datetimes through the connection's standard codec:
#: setting the binary one empties the connection's statement cache, so that every COPY prepared its
#: statement again, which costs a small flush (a group commit's, under moderate load) more than
#: the datetimes do. Larger flushes go binary.
SMALL_FLUSH = 500
_STAGE = "readings_stage"
_CREATE_STAGE = f"""CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (
    device_id text, ts timestamptz, received_at timestamptz, seq bigint, dedup bigint, kind text, event text,
    component text, metrics jsonb, extra jsonb, source text, untimed boolean) ON COMMIT DELETE ROWS"""
#: An untimed row with a `seq` (no device time: `ts` is its receive time; see `identity`).
_UNTIMED = "(s.seq IS NOT NULL AND s.untimed)"
_INSERT = (f"INSERT INTO readings ({', '.join(READING_COLUMNS)}) "
           f"SELECT {', '.join('s.' + c for c in READING_COLUMNS)} FROM {_STAGE} s")
#: Timed rows: the unique index (device_id, ts, dedup) is the identity.
INSERT_TIMED = _INSERT + f" WHERE NOT {_UNTIMED} ON CONFLICT DO NOTHING"
#: Untimed rows: their `ts` is a receive time, different for every delivery, so a copy is also
#: recognised by (device_id, dedup) within +-$1 ms of it.
INSERT_UNTIMED = _INSERT + (
    f" WHERE {_UNTIMED} AND NOT EXISTS (SELECT 1 FROM readings r WHERE r.device_id = s.device_id"
    " AND r.dedup = s.dedup"
    " AND r.ts BETWEEN s.ts - $1 * interval '1 millisecond' AND s.ts + $1 * interval '1 millisecond')"
    " ON CONFLICT DO NOTHING"
)
#: Writes that take the staging path after a direct COPY met a row already stored (a redelivery
#: after a restart usually brings many: they are not each tried directly first).
STAGED_AFTER_CONFLICT = 20
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
    - seq, no device time (`Reading.untimed`):
      (detector, -1, digest of "u"/seq/component/event), `untimed`: the receive time is no part of it;
    - no seq: (detector, ts, digest of component/event/metrics).
    `metrics_json` is `canonical_json(r.metrics)` when the caller has it already.
    """
    untimed = False
    if r.seq is not None:
        untimed = r.untimed
        key = _digest(f"{'u' if untimed else 's'}|{r.seq}|{r.component}|{int(r.event)}".encode())
    else:
        if metrics_json is None:
            metrics_json = canonical_json(r.metrics)
        key = _digest(f"c|{r.component}|{int(r.event)}|".encode() + metrics_json)
    return (r.detector_id, -1 if untimed else r.ts_ms, key), key, untimed


def dedup_key(r: Reading) -> int:
    """The stored `dedup` of a reading (see `identity`)."""
    return identity(r)[1]


def pg_time(ms: int) -> int:
    """PostgreSQL's binary timestamptz (microseconds since 2000-01-01 UTC) of epoch ms; exact."""
    return ms * 1000 + _PG_EPOCH_US


def is_untimed_row(row: tuple[Any, ...]) -> bool:
    """True for the row of an untimed reading with a `seq` (see `identity`)."""
    return row[3] is not None and row[11]


def prepare(r: Reading, source: str) -> tuple[MemoryKey, tuple[Any, ...]]:
    """(in-memory dedupe key, row in ROW_COLUMNS order) of one reading: its identity and its metrics
    JSON computed once each."""
    metrics_json = canonical_json(r.metrics)
    mem, key, _untimed = identity(r, metrics_json)
    return mem, (
        r.device_id,
        pg_time(r.ts_ms),
        pg_time(r.received_ms),
        r.seq,
        key,
        r.kind.name,
        r.event.name,
        r.component,
        metrics_json.decode(),
        canonical_json(r.extra).decode() if r.extra else None,
        source,
        r.untimed,
    )


#: identity's digest bases, with component None: b"c|None|{event}|" + metrics JSON (no seq),
#: b"s|{seq}|None|{event}" (seq and a device time), b"u|{seq}|None|{event}" (seq, untimed).
_CONTENT_BASIS = {e: f"c|None|{int(e)}|".encode() for e in Event}
_SEQ_SUFFIX = {e: f"|None|{int(e)}".encode() for e in Event}
_BLAKE2B_8 = hashlib.blake2b(digest_size=8)
_U64 = struct.Struct(">Q").unpack


def prepare_many(readings: Sequence[Reading], source: str) -> tuple[list[MemoryKey], list[tuple[Any, ...]]]:
    """`prepare` of each reading: (in-memory dedupe keys, rows), the same values computed with
    fewer Python operations (digest bases from precomputed parts, one blake2b state copied per
    reading, names from dicts); property-tested against `prepare`."""
    keys: list[MemoryKey] = []
    rows: list[tuple[Any, ...]] = []
    dumps, sort = orjson.dumps, _SORTED
    copy, u64, epoch = _BLAKE2B_8.copy, _U64, _PG_EPOCH_US
    content_basis, seq_suffix, kind_names, event_names = _CONTENT_BASIS, _SEQ_SUFFIX, KIND_NAMES, EVENT_NAMES
    for r in readings:
        try:
            metrics_json = dumps(r.metrics, option=sort)
        except TypeError:
            metrics_json = canonical_json(r.metrics)
        component, seq, event, ts_ms = r.component, r.seq, r.event, r.ts_ms
        if component is not None or (seq is not None and type(seq) is not int):
            mem, key, untimed = identity(r, metrics_json)
        else:
            untimed = False
            if seq is None:
                basis = content_basis[event] + metrics_json
            else:
                untimed = r.untimed
                basis = (b"u|%d" if untimed else b"s|%d") % seq + seq_suffix[event]
            h = copy()
            h.update(basis)
            key = u64(h.digest())[0] >> 1
            mem = (r.device_id, -1 if untimed else ts_ms, key)
        extra = r.extra
        keys.append(mem)
        rows.append((
            r.device_id, ts_ms * 1000 + epoch, r.received_ms * 1000 + epoch, seq, key, kind_names[r.kind],
            event_names[event], component, metrics_json.decode(), canonical_json(extra).decode() if extra else None,
            source, r.untimed,
        ))
    return keys, rows


def reading_row(r: Reading, source: str) -> tuple[Any, ...]:
    """The row of one reading (ROW_COLUMNS order)."""
    return prepare(r, source)[1]


class ReadingStore:
    """Writes batches idempotently, each atomically.

    Timed rows are COPY'd straight into `readings`; when one is already stored (a redelivery the
    in-memory window no longer knew, or another worker's copy), the whole flush is rolled back and
    written again on the staging path: COPY into a session-local staging table, then INSERT ...
    ON CONFLICT DO NOTHING (so are the next STAGED_AFTER_CONFLICT flushes). Untimed rows always
    take it (their copies are found by (device, dedup) within a window, which no unique index
    expresses). The same rows are stored either way; the direct COPY saves PostgreSQL the second
    pass (about 40% of its work per row). A flush of timed rows alone, the common case, is that
    one COPY, atomic by itself: no BEGIN, savepoint or COMMIT round trips (a group commit writes
    small flushes often). Times go as binary timestamptz values (`pg_time`), through a codec set
    on the connection for the COPYs only, when a flush is larger than SMALL_FLUSH."""

    def __init__(self, pool: asyncpg.Pool, *, untimed_window_ms: int = 600_000) -> None:
        self.pool = pool
        self.untimed_window_ms = untimed_window_ms
        self._staged_writes = 0  # writes left that take the staging path after a conflict

    async def write(
        self,
        rows: list[tuple[Any, ...]],
        new_devices: list[tuple[str, str]],
        dead_letters: list[DeadLetter],
    ) -> int:
        """Write one flush atomically; answer how many readings were new."""
        untimed = [row for row in rows if is_untimed_row(row)]
        timed = rows if not untimed else [row for row in rows if not is_untimed_row(row)]
        direct = bool(timed) and self._staged_writes == 0
        if timed and not direct:
            self._staged_writes -= 1
        async with self.pool.acquire() as conn:
            if direct:
                try:
                    return await self._write(conn, timed, untimed, new_devices, dead_letters, direct=True)
                except asyncpg.UniqueViolationError:
                    self._staged_writes = STAGED_AFTER_CONFLICT
            return await self._write(conn, timed, untimed, new_devices, dead_letters, direct=False)

    async def _write(
        self, conn: asyncpg.Connection, timed: list[tuple[Any, ...]], untimed: list[tuple[Any, ...]],
        new_devices: list[tuple[str, str]], dead_letters: list[DeadLetter], *, direct: bool,
    ) -> int:
        """One attempt, in one transaction unless it is a single direct COPY."""
        times: contextlib.AbstractAsyncContextManager[None]
        if len(timed) + len(untimed) <= SMALL_FLUSH:  # the connection's codecs, and its cached statements
            timed, untimed, times = _with_datetimes(timed), _with_datetimes(untimed), contextlib.nullcontext()
        else:
            times = _BinaryTimes(conn)
        if direct and not (untimed or new_devices or dead_letters):
            async with times:
                await conn.copy_records_to_table("readings", records=timed, columns=READING_COLUMNS)
            return len(timed)
        async with conn.transaction():
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
            if not (timed or untimed):
                return 0
            async with times:
                return await self._write_rows(conn, timed, untimed, direct=direct)

    async def _write_rows(
        self, conn: asyncpg.Connection, timed: list[tuple[Any, ...]], untimed: list[tuple[Any, ...]], *, direct: bool
    ) -> int:
        written = 0
        if direct:  # a conflict raises out of the transaction: `write` tries again, staged
            await conn.copy_records_to_table("readings", records=timed, columns=READING_COLUMNS)
            written, timed = len(timed), []
        staged = timed + untimed
        if not staged:
            return written
        await conn.execute(_CREATE_STAGE)
        await conn.copy_records_to_table(_STAGE, records=staged, columns=READING_COLUMNS)
        if timed:
            written += _count(await conn.execute(INSERT_TIMED))
        if untimed:
            written += _count(await conn.execute(INSERT_UNTIMED, self.untimed_window_ms))
        return written

    async def maintain_partitions(self, today: date, ahead_days: int, retention_days: int) -> tuple[int, int]:
        """Create the coming days' partitions and drop those past retention; answer (made, dropped)."""
        async with self.pool.acquire() as conn:
            made = await conn.fetchval(
                "SELECT mx_ensure_readings_partitions($1, $2)", today - timedelta(days=1), ahead_days + 1
            )
            dropped = await conn.fetchval("SELECT mx_drop_readings_before($1)", today - timedelta(days=retention_days))
            return int(made), int(dropped)


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


def _with_datetimes(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows with their two binary times (`pg_time`) as datetimes, for the standard codec."""
    return [(row[0], _PG_EPOCH_DT + timedelta(microseconds=row[1]), _PG_EPOCH_DT + timedelta(microseconds=row[2]),
             *row[3:]) for row in rows]


class _BinaryTimes:
    """timestamptz on `conn` encoded from (and decoded to) PostgreSQL's binary value, an int, while
    inside; the connection goes back to the pool with the standard codec, or is closed."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def __aenter__(self) -> None:
        await self.conn.set_type_codec(
            "timestamptz", schema="pg_catalog", format="binary", encoder=_I64.pack, decoder=_decode_i64
        )

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.conn.reset_type_codec("timestamptz", schema="pg_catalog")
        except BaseException:
            self.conn.terminate()  # never hand a connection with this codec to anyone else
            raise


def _decode_i64(data: bytes) -> int:
    return int(_I64.unpack(data)[0])

"""One rule for extreme values, from the codecs to PostgreSQL: whatever a codec accepts, the
readings' JSON columns and the device-state checkpoint store and give back; what they could
not store, the codecs refuse (with a reason for the dead letter).

Property-tested with reports holding floats across the whole double range (1e39, -1e308,
subnormals, just beyond float32), huge integers, long text with any unicode (NUL and lone
surrogates too) and nested `extra`: decoded by the real codecs (one report, and the columnar
batch path), written by the real `ReadingStore`, checkpointed by the real `DeviceService` into
this test's database, and read back (readings as stored, live state through the start-up load).
Then the same through `miaoxiang serve`: a report of 1e39, a graceful stop, a new start.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.batch import NUMERIC_COLUMNS, ReadingColumns
from devices.commands import CommandService
from devices.fleet import Fleet
from devices.kinds import KIND_METRICS, NB_METRICS, Kind
from devices.reading import Reading
from devices.service import DeviceService
from ingest.codecs.errors import DecodeError
from ingest.codecs.json_report import decode_json_batch, decode_json_report
from ingest.codecs.values import METRIC_LIMIT
from ingest.storage import ReadingStore, prepare_many
from miaoxiang.migrate import migrate
from miaoxiang.settings import DEFAULT_MIGRATIONS_DIR
from tests.integration.faultkit import Publisher, report, service, service_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

RECEIVED = 1_795_341_600_000
EDGES = [1e39, -1e39, -1e308, 1e308, 1.7976931348623157e308, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-45,
         1.4e-45, 3.4028234663852886e38, -3.4028234663852886e38, 3.4028235677973366e38, 3.5e38, 0.0, -0.0, 4.2]
_ids = itertools.count()

floats = st.one_of(st.sampled_from(EDGES), st.floats(allow_nan=False, allow_infinity=False))
huge_ints = st.integers(min_value=-(10**400), max_value=10**400)
numbers = st.one_of(floats, huge_ints, st.integers())
texts = st.one_of(
    st.text(max_size=80),
    st.text(min_size=500, max_size=3000),
    st.sampled_from(["\x00", "a\x00b", "\ud800", "x\udfffy", "火灾报警", "🔥" * 40, "\u2028\ufeff"]),
)
leaves = st.one_of(st.none(), st.booleans(), numbers, texts)
trees = st.recursive(leaves, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                     st.dictionaries(texts, inner, max_size=3)), max_leaves=25)
deep = st.integers(min_value=10, max_value=24).map(lambda n: _nest(n))


def _nest(depth: int) -> Any:
    value: Any = 1e39
    for _ in range(depth):
        value = {"k": [value]}
    return value


def _metric_value(kind: type) -> st.SearchStrategy[Any]:
    if kind is list:
        return st.lists(numbers, min_size=1, max_size=4)
    if kind is str:
        return texts
    if kind is bool:
        return st.booleans()
    return numbers


@st.composite
def reports(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from([Kind.smoke, Kind.electrical, Kind.water, Kind.gas]))
    names = {**NB_METRICS, **KIND_METRICS[kind]}
    chosen = draw(st.lists(st.sampled_from(sorted(names)), max_size=5, unique=True))
    data: dict[str, Any] = {name: draw(_metric_value(names[name])) for name in chosen}
    data.update(draw(st.dictionaries(texts.filter(lambda k: k not in names), st.one_of(trees, deep), max_size=3)))
    return {"device_id": f"xv-{next(_ids)}", "kind": kind.name, "ts": RECEIVED - draw(st.integers(0, 10**9)),
            "seq": draw(st.integers(0, 2**31 - 1)), "event": "report", "data": data}


def encode(report: dict[str, Any]) -> bytes:
    """The report as a sender would send it: JSON text, lone surrogates as \\u escapes."""
    return json.dumps(report, ensure_ascii=True).encode()


def same_json(sent: Any, back: Any) -> bool:
    """The same JSON value: jsonb keeps numbers as decimals, so a float may come back as the
    integer its decimal spells (3.4028234663852886e38 as 340282346638528860000000000000000000000)."""
    if isinstance(sent, float):
        return isinstance(back, (int, float)) and not isinstance(back, bool) and float(back) == sent
    if isinstance(sent, dict):
        return isinstance(back, dict) and sent.keys() == back.keys() and all(
            same_json(v, back[k]) for k, v in sent.items()
        )
    if isinstance(sent, list):
        return isinstance(back, list) and len(sent) == len(back) and all(map(same_json, sent, back))
    return type(sent) is type(back) and sent == back


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    async with pool.acquire() as conn:
        await migrate(conn, DEFAULT_MIGRATIONS_DIR)
    try:
        yield pool
    finally:
        await pool.close()


def device_service(pool: asyncpg.Pool, fleet: Fleet) -> DeviceService:
    async def publish(_topic: str, _payload: bytes) -> None:
        raise AssertionError("no command is sent here")

    commands = CommandService(pool, fleet, publish, topic_root="mx/v1/default", clock=lambda: RECEIVED)
    return DeviceService(pool, fleet, commands, clock=lambda: RECEIVED)


def decode_both(payload: bytes) -> Reading | None:
    """The reading the codecs make of `payload`, or None when they refuse it; the single-report
    decoder and the columnar batch path must agree."""
    try:
        single: Reading | None = decode_json_report(payload, received_ms=RECEIVED)
    except DecodeError as e:
        assert e.reason
        single = None
    batch, errors = decode_json_batch(b"[" + payload + b"]", received_ms=RECEIVED)
    assert (batch[0] if batch else None) == single, (batch, errors)
    return single


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(batch=st.lists(reports(), min_size=1, max_size=4))
async def test_what_the_codecs_accept_postgresql_stores_and_gives_back(
    pool: asyncpg.Pool, batch: list[dict[str, Any]]
) -> None:
    readings = [r for r in map(decode_both, map(encode, batch)) if r is not None]
    if not readings:
        return
    # readings: the real rows, through the real store
    _keys, rows = prepare_many(readings, "mqtt")
    store = ReadingStore(pool)
    written = await store.write(rows, [(r.device_id, r.kind.name) for r in readings], [])
    assert written == len(readings)
    stored = {r["device_id"]: r for r in await pool.fetch(
        "SELECT device_id, metrics::text, extra::text FROM readings WHERE device_id = ANY($1)",
        [r.device_id for r in readings],
    )}
    for r in readings:
        assert same_json(r.metrics, json.loads(stored[r.device_id]["metrics"]))
        assert same_json(r.extra, json.loads(stored[r.device_id]["extra"] or "{}"))
    # live state: applied to a fleet, checkpointed, loaded by a fresh one as at start-up
    fleet = Fleet()
    slots = np.array([fleet.upsert(r.device_id, r.kind, quarantined=True) for r in readings])
    fleet.apply(ReadingColumns.from_readings(readings, slots))
    assert await device_service(pool, fleet).checkpoint() == len(readings)
    again = Fleet()
    await device_service(pool, again).load()
    for r, slot in zip(readings, slots.tolist()):
        back = again.slot(r.device_id)
        assert again.last_seen_ms[back] == fleet.last_seen_ms[slot] == RECEIVED
        for name in NUMERIC_COLUMNS:
            before, after = fleet.values[name][slot], again.values[name][back]
            assert (math.isnan(before) and math.isnan(after)) or before == after, (name, before, after)
            assert not np.isinf(before), f"{name} overflowed the live state: the codecs must refuse it"


@pytest.mark.parametrize("value", [1e39, -1e39, -1e308, 3.5e38])
def test_a_metric_beyond_float32_is_refused_with_its_reason(value: float) -> None:
    report = {"device_id": "xv-big", "kind": "smoke", "ts": RECEIVED, "data": {"temperature_c": value}}
    with pytest.raises(DecodeError, match="temperature_c must be between"):
        decode_json_report(encode(report), received_ms=RECEIVED)
    assert decode_both(encode(report)) is None
    inside = {**report, "data": {"temperature_c": METRIC_LIMIT, "note": value}}  # kept as is in `extra`
    assert decode_json_report(encode(inside), received_ms=RECEIVED).extra == {"note": value}


async def test_a_report_of_1e39_costs_no_device_its_saved_state_across_a_restart(
    database_url: str, mqtt_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    """`temperature_c: 1e39` (finite JSON) once made the final checkpoint fail for every device,
    so a restart forgot all their `last_seen`. Now it is a dead letter with its reason, and a
    graceful stop saves every device, which a new start loads."""
    now_ms = int(time.time() * 1000)
    devices = [f"xv-smk-{i}" for i in range(3)]
    messages = [(f"{topic_prefix}/default/tel/smoke/{d}", report(d, 1, now_ms + i, "report", temperature_c=21.5))
                for i, d in enumerate(devices)]
    messages.append((f"{topic_prefix}/default/tel/smoke/{devices[0]}",
                     report(devices[0], 2, now_ms + 10, "report", temperature_c=1e39)))
    env = service_env(database_url=database_url, mqtt_url=mqtt_url, topic_prefix=topic_prefix,
                      client_id=f"xv-{uuid.uuid4().hex[:8]}", checkpoint_interval_s="3600")  # only the last one
    conn = await asyncpg.connect(database_url)
    try:
        with service(env, tmp_path / "svc.log") as svc:
            svc.start()
            pub = Publisher(urlsplit(mqtt_url).port or 1883)
            try:
                pub.send(messages)
            finally:
                pub.close()
            reason = await _poll(lambda: conn.fetchval("SELECT reason FROM dead_letters"), "the 1e39 dead letter")
            await _poll(lambda: _count(conn, "SELECT count(*) FROM readings", len(devices)), "the readings written")
            before = [svc.get(f"/api/v1/devices/{d}").json()["last_seen"] for d in devices]
            first = svc.proc
            svc.stop()  # SIGTERM: the graceful stop writes the last checkpoint
            assert first is not None and first.returncode == 0, svc.log()[-3000:]
            saved = await conn.fetchval("SELECT count(*) FROM device_state WHERE last_seen IS NOT NULL")
            svc.start()
            after = [svc.get(f"/api/v1/devices/{d}").json() for d in devices]
    finally:
        await conn.close()
    assert "temperature_c must be between" in reason
    assert saved == len(devices), "the last checkpoint saved every device"
    assert all(before) and [d["last_seen"] for d in after] == before, (before, after)
    assert after[0]["values"]["temperature_c"]["value"] == 21.5  # the refused report changed nothing


async def _poll(fetch: Callable[[], Awaitable[Any]], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := await fetch()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.1)
    return value


async def _count(conn: asyncpg.Connection, sql: str, n: int) -> bool:
    return int(await conn.fetchval(sql)) >= n

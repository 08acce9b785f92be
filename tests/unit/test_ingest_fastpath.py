"""The hot path's shortcuts stay property-tested against the slow, obvious code they replace:
the orjson batch decoder against the element-by-element one, the one-pass column builder against
twelve passes, and the once-per-reading identity/row against its definition."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from devices.batch import NUMERIC_COLUMNS, ReadingColumns
from devices.fleet import Fleet
from devices.kinds import ALL_METRICS, Event, Kind
from devices.reading import Reading
from ingest.codecs.errors import DecodeError
from ingest.codecs.json_report import (
    _fast_batch,
    _load_report,
    _slow_batch,
    decode_json_batch_indexed,
    encode_json_report,
)
from ingest.codecs.values import load_json
from ingest.metrics import IngestMetrics
from ingest.pipeline import Deduper, Flush, Pipeline, Submission
from ingest.storage import (
    ROW_COLUMNS,
    ReadingStore,
    canonical_json,
    identity,
    is_untimed_row,
    pg_time,
    prepare,
    prepare_many,
)
from tests.unit.test_codec_json import JSON_VALUES, json_readings

RECEIVED = 1_795_341_600_000
FAST = settings(max_examples=300, deadline=None)

_ODD_ELEMENTS = st.sampled_from([
    b"1", b"null", b"[]", b'"x"', b"{}", b'{"device_id":"a","kind":"smoke","junk":[[[[1]]]]}',
    b'{"device_id":"a","kind":"smoke","data":{"v":NaN}}',
    b'{"device_id":"a","kind":"smoke","seq":12345678901234567890}',
    b'{"device_id":"a","kind":"smoke","data":{"big":123456789012345678901}}',
    b'{"device_id":"a","kind":"smoke","ts":1e400}',
    b'{"device_id":"a","kind":"smoke","data":{"s":"\\ud800"}}',
    b'{"device_id":"a","kind":"smoke","data":{"f":0.1000000000000000055511}}',
    b'{"device_id":"a","kind":"smoke","kind":"gas"}', b'{"device_id":"a","kind":"nope"}', b'{"device_id":"a",', b"\xff",
    b'{"device_id":"a","kind":"smoke","data":' + b"[" * 40 + b"]" * 40 + b"}",
    b'{"device_id":"a","kind":"smoke","ts":"2026-11-22T08:00:00Z","data":{"temperature_c":-0.0,"battery_pct":1E2}}',
    b'{"device_id":"c","kind":"charger","data":{"residual_current_ma":350,"port_current_a":3.5,"port_temp_c":[41]}}',
    b'{"device_id":"c","kind":"charger","data":{"port":0}}', b'{"device_id":"c","kind":"charger","data":{"port":2.0}}',
    b'{"device_id":"c","kind":"charger","data":{"port_power_w":-1}}',
    b'{"device_id":"w","kind":"water","data":{"tilt_deg":181,"flow_m3h":0}}',
    b'{"device_id":"g","kind":"gas","data":{"co_ppm":10001}}',
])


@st.composite
def batches(draw: st.DrawFn) -> bytes:
    parts: list[bytes] = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.integers(0, 3)) == 0:
            parts.append(draw(_ODD_ELEMENTS))
        else:
            r = draw(json_readings())
            doc = json.loads(encode_json_report(r))
            if draw(st.booleans()):
                doc.pop("ts")  # untimed
            parts.append(json.dumps(doc, ensure_ascii=draw(st.booleans())).encode())
    sep = draw(st.sampled_from([b",", b" , ", b",\n"]))
    return b"[" + sep.join(parts) + b"]"


@given(batches())
@FAST
def test_fast_batch_decodes_exactly_what_the_slow_path_does(payload: bytes) -> None:
    try:
        slow = _slow_batch(payload, RECEIVED)
    except Exception as e:  # the whole payload is refused: the fast path must not accept it
        assert _fast_batch(payload, RECEIVED) is None, e
        return
    fast = _fast_batch(payload, RECEIVED)
    if fast is not None:
        assert not slow.errors and fast == slow.readings
        assert [type(v) for r in fast for v in r.metrics.values()] == [
            type(v) for r in slow.readings for v in r.metrics.values()
        ]
    got = decode_json_batch_indexed(payload, received_ms=RECEIVED)
    assert got.readings == slow.readings and got.errors == slow.errors
    for i in range(len(got.readings)):
        assert got.element(i) == slow.element(i)


@given(st.one_of(_ODD_ELEMENTS, batches(), st.binary(max_size=64),
                 json_readings().map(encode_json_report).map(lambda b: b.replace(b",", b" , ", 1))))
@FAST
def test_a_report_parses_as_the_standard_parser_does(payload: bytes) -> None:
    try:
        expected = load_json(payload, "the report")
    except DecodeError as e:
        with pytest.raises(DecodeError) as got:
            _load_report(payload)
        assert got.value.reason == e.reason
        return
    got = _load_report(payload)
    assert got == expected and json.dumps(got) == json.dumps(expected)  # same values, same types, same key order


def test_fast_batch_takes_the_fast_path_for_plain_batches() -> None:
    rs = [
        Reading(f"d{i}", Kind.smoke, Event.heartbeat, RECEIVED - 1 - i, RECEIVED, i, {"battery_pct": 80.0})
        for i in range(3)
    ]
    payload = b"[" + b",".join(encode_json_report(r) for r in rs) + b"]"
    assert _fast_batch(payload, RECEIVED) == rs
    assert decode_json_batch_indexed(payload, received_ms=RECEIVED).element(1) == encode_json_report(rs[1])


def _reference_columns(readings: list[Reading], slots: list[int]) -> dict[str, np.ndarray]:
    """The twelve-pass definition `from_readings` replaced."""
    n = len(readings)
    return {
        name: np.fromiter((get(r.metrics) for r in readings), np.float64, n) for name, get in NUMERIC_COLUMNS.items()
    }


_METRIC_VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**60), 2**60), st.booleans(), st.text(max_size=3),
    st.lists(
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False), st.integers(-1000, 1000), st.booleans(),
            st.text(max_size=2),
        ),
        max_size=4,
    ),
    st.none(),
)


@given(st.lists(
    st.dictionaries(st.sampled_from([*NUMERIC_COLUMNS, "cell_id", "valve", "current_a"]), _METRIC_VALUES), max_size=8
))
@FAST
def test_one_pass_columns_match_the_per_column_definition(metric_maps: list[dict[str, Any]]) -> None:
    readings = [Reading(f"d{i}", Kind.smoke, Event.report, i, i, None, m) for i, m in enumerate(metric_maps)]
    cols = ReadingColumns.from_readings(readings, np.arange(len(readings)))
    want = _reference_columns(readings, list(range(len(readings))))
    assert cols.values.keys() == want.keys()
    for name, column in want.items():
        np.testing.assert_array_equal(cols.values[name], column, err_msg=name)


@given(json_readings(), st.booleans())
@FAST
def test_prepared_row_matches_its_definition(r: Reading, untimed: bool) -> None:
    if untimed:
        r.received_ms, r.untimed = r.ts_ms, True
    mem, row = prepare(r, "src")
    record = dict(zip(ROW_COLUMNS, row, strict=True))
    is_untimed = r.seq is not None and untimed
    assert (mem, record["dedup"], is_untimed) == identity(r)
    assert is_untimed_row(row) == is_untimed
    assert mem == (r.detector_id, -1 if is_untimed else r.ts_ms, record["dedup"])
    assert json.loads(record["metrics"]) == json.loads(json.dumps(r.metrics))
    assert (json.loads(record["extra"]) if record["extra"] else {}) == r.extra
    assert record["metrics"].encode() == canonical_json(r.metrics)
    assert (record["ts"], record["received_at"]) == (pg_time(r.ts_ms), pg_time(r.received_ms))
    assert (record["seq"], record["source"], record["kind"], record["event"]) == (
        r.seq, "src", r.kind.name, r.event.name
    )
    assert record["component"] == r.component and record["device_id"] == r.device_id
    # a redelivered copy (untimed: received again later) has the same identity
    copy = Reading(**{f: getattr(r, f) for f in r.__slots__})  # type: ignore[attr-defined]
    if is_untimed:
        copy.ts_ms = copy.received_ms = r.received_ms + 5000
    assert prepare(copy, "other")[0][2] == mem[2]


@given(st.lists(st.tuples(json_readings(), st.booleans()), max_size=6))
@FAST
def test_prepare_many_is_prepare_of_each(drawn: list[tuple[Reading, bool]]) -> None:
    readings = []
    for r, untimed in drawn:
        if untimed:
            r.received_ms, r.untimed = r.ts_ms, True
        readings.append(r)
    keys, rows = prepare_many(readings, "src")
    assert list(zip(keys, rows, strict=True)) == [prepare(r, "src") for r in readings]


def test_pg_time_is_postgres_binary_timestamp() -> None:
    # microseconds since 2000-01-01T00:00:00Z
    assert pg_time(946_684_800_000) == 0
    assert pg_time(0) == -946_684_800_000_000
    assert pg_time(253_402_300_799_999) == (253_402_300_799_999 - 946_684_800_000) * 1000


# --- the columnar batch validator (json_columns) against the element-by-element slow path -----

_ANY_SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**18), 10**18), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4), st.sampled_from(["", "\x00", "\ud800", "x" * 65, "温度"]),
)
_ANY = st.one_of(
    _ANY_SCALAR, st.lists(_ANY_SCALAR, max_size=3), st.dictionaries(st.text(max_size=3), _ANY_SCALAR, max_size=2)
)
_NUMBERS = st.one_of(st.integers(-(10**18), 10**18), st.floats(allow_nan=False, allow_infinity=False),
                     st.floats(-1, 200), st.integers(-3, 103))
_BAD_METRIC = {
    float: st.one_of(_NUMBERS, _ANY),
    int: st.one_of(st.sampled_from([-1, 3, 1.5, 2**31, 2.0**40, True]), _NUMBERS, _ANY),
    bool: _ANY,
    str: st.one_of(st.sampled_from(["ajar", "", "x" * 65, "a\x00"]), _ANY),
    list: st.one_of(st.lists(_NUMBERS, max_size=70), _ANY),
}
_BAD = {
    "device_id": st.one_of(_ANY, st.sampled_from(["a\nb", "x" * 65, "", "é", "a b", "a\n"])),
    "kind": _ANY,
    "event": _ANY,
    "ts": st.one_of(_ANY, st.sampled_from([-1, 253_402_300_800_000, 1.5, True, "yesterday", "2026-02-30T00:00:00Z"])),
    "seq": st.one_of(_ANY, st.sampled_from([-1, 2**31, 1.0, True])),
    "component": st.one_of(_ANY, st.sampled_from(["", "x" * 65, "\x00"])),
    "data": _ANY,
}


def _good_metric(name: str) -> st.SearchStrategy[Any]:
    """Valid values of a metric as gateways send them: for a float metric an int too (80 for 80.0),
    for an int metric a whole float too (1.0 for 1)."""
    from ingest.codecs.values import METRIC_TYPES, RANGES

    valid = JSON_VALUES[name]
    lo, hi = RANGES.get(name, (-(10**18), 10**18))
    if METRIC_TYPES[name] is float:
        return st.one_of(valid, st.integers(int(max(lo, -(10**18))), int(min(hi, 10**18))))
    if METRIC_TYPES[name] is int:
        return st.one_of(valid, valid.map(float))
    return valid


_GOOD = {
    "device_id": st.from_regex(r"\A[A-Za-z0-9_.:-]{1,64}\Z"),
    "kind": st.sampled_from([k.name for k in Kind]),
    "event": st.sampled_from([e.name for e in Event]) | st.none(),
    "ts": st.one_of(st.integers(0, 253_402_300_799_999), st.just(RECEIVED), st.none(),
                    st.sampled_from(
                        ["2026-11-22T08:00:00Z", "2026-11-22 08:00:00.123456+08:00", "1970-01-01T00:00:00z"]
                    )),
    "seq": st.integers(0, 2**31 - 1) | st.none(),
    "component": st.from_regex(r"\A[0-9]{1,3}:[0-9]{1,3}\Z") | st.none(),
}


@st.composite
def _element(
    draw: st.DrawFn, shape: tuple[str, ...], metric_names: tuple[str, ...], bad_percent: int
) -> dict[str, Any]:
    from ingest.codecs.values import METRIC_TYPES

    def bad() -> bool:
        return bad_percent > 0 and draw(st.integers(0, 99)) < bad_percent

    doc: dict[str, Any] = {}
    for key in shape:
        if key != "data":
            doc[key] = draw(_BAD[key] if bad() else _GOOD[key])
        elif bad():
            doc[key] = draw(_BAD[key])
        else:
            data: dict[str, Any] = {}
            for name in metric_names:
                if draw(st.integers(0, 5)) == 0:
                    continue  # elements of one batch need not carry the same metrics
                if name not in METRIC_TYPES:
                    data[name] = draw(_EXTRA_VALUES)
                else:
                    data[name] = draw(_BAD_METRIC[METRIC_TYPES[name]] if bad() else _good_metric(name))
            doc[key] = data
    return doc


_EXTRA_VALUES = st.one_of(st.integers(-(10**18), 10**18), st.floats(allow_nan=False, allow_infinity=False),
                          st.text(max_size=3), st.lists(st.integers(0, 3), max_size=2),
                          st.dictionaries(st.text(max_size=2), st.booleans(), max_size=2))
_SHAPE_KEYS = ("device_id", "kind", "event", "ts", "seq", "component", "data")
_METRIC_NAMES = st.lists(
    st.sampled_from([*sorted(ALL_METRICS), "fw", "vendor", "x"]), unique=True, max_size=6
).map(tuple)


@st.composite
def shaped_batches(draw: st.DrawFn) -> bytes:
    """Gateway batches as they come: most elements of one shape (same keys, same metrics), some
    values of every kind wrong, invalid or unusual (RFC 3339 times, ints for floats, unknown keys)."""
    shape = ("device_id", "kind", *draw(st.lists(st.sampled_from(_SHAPE_KEYS[2:]), unique=True)))
    if draw(st.integers(0, 9)) == 0:
        shape = tuple(draw(st.permutations(shape)))[: draw(st.integers(0, len(shape)))]
    names = draw(_METRIC_NAMES)
    bad_percent = draw(st.sampled_from([0, 0, 0, 2, 10, 40]))
    docs = draw(st.lists(_element(shape, names, bad_percent), min_size=1, max_size=12))
    text = json.dumps(docs, ensure_ascii=draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass") if draw(st.booleans()) else json.dumps(docs).encode()


@given(shaped_batches())
@settings(max_examples=1500, deadline=None)
def test_columnar_fast_batch_is_the_slow_path(payload: bytes) -> None:
    fast = _fast_batch(payload, RECEIVED)
    try:
        slow = _slow_batch(payload, RECEIVED)
    except DecodeError:  # the whole payload is refused (not UTF-8): so must the fast path
        assert fast is None
        return
    if not slow.errors and re.search(rb"[0-9]{19}", payload) is None:
        # every element is valid and holds report keys only, no number that orjson would read as
        # a float where the standard parser keeps an int: the fast path must take the batch
        assert fast is not None
    if fast is not None:
        assert not slow.errors and fast == slow.readings
        assert [type(v) for r in fast for v in r.metrics.values()] == [
            type(v) for r in slow.readings for v in r.metrics.values()
        ]
        assert [type(v) for r in fast for v in r.extra.values()] == [
            type(v) for r in slow.readings for v in r.extra.values()
        ]
        assert [prepare(r, "s") for r in fast] == [prepare(r, "s") for r in slow.readings]
    got = decode_json_batch_indexed(payload, received_ms=RECEIVED)
    assert got.readings == slow.readings and got.errors == slow.errors


def test_columnar_fast_batch_converts_like_validate_metric() -> None:
    payload = json.dumps([
        {"device_id": "a", "kind": "smoke", "data": {"battery_pct": 80, "ecl": 1.0, "temperature_c": -0.0, "pci": 7}},
        {"device_id": "b", "kind": "smoke", "ts": "2026-11-22T08:00:00.5Z", "data": {"battery_pct": 80.5, "fw": "1"}},
        {"device_id": "c", "kind": "electrical", "ts": RECEIVED, "data": {"voltage_v": [220, 221.5]}},
    ]).encode()
    fast = _fast_batch(payload, RECEIVED)
    assert fast is not None and fast == _slow_batch(payload, RECEIVED).readings
    assert fast[0].metrics == {"battery_pct": 80.0, "ecl": 1, "temperature_c": -0.0, "pci": 7}
    assert type(fast[0].metrics["battery_pct"]) is float and type(fast[0].metrics["ecl"]) is int
    assert fast[1].metrics == {"battery_pct": 80.5} and fast[1].extra == {"fw": "1"}
    assert fast[2].metrics == {"voltage_v": [220.0, 221.5]}
    assert (fast[2].received_ms, fast[2].untimed) == (RECEIVED, False)  # timed, though stamped at its receive time
    assert (fast[0].ts_ms, fast[0].untimed) == (RECEIVED, True)


@pytest.mark.parametrize("bad", [
    {"device_id": "a\nb"}, {"device_id": "x" * 65}, {"kind": "toaster"}, {"event": "party"}, {"ts": -1},
    {"ts": "yesterday"}, {"seq": 2**31}, {"seq": True}, {"component": ""}, {"data": [1]},
    {"data": {"battery_pct": 101}}, {"data": {"battery_pct": True}}, {"data": {"ecl": 1.5}},
    {"data": {"valve": "ajar"}}, {"data": {"cell_id": ""}}, {"data": {"mains_ok": 1}}, {"data": {"voltage_v": []}},
    {"data": {"fw": {"a": [[]] * 0, "b": "\x00"}}},
])
def test_one_bad_element_sends_the_batch_to_the_slow_path(bad: dict[str, Any]) -> None:
    good = [
        {"device_id": f"d{i}", "kind": "smoke", "event": "heartbeat", "ts": RECEIVED - i, "data": {"battery_pct": 50}}
        for i in range(5)
    ]
    good[3] = {**good[3], **bad}
    payload = json.dumps(good).encode()
    assert _fast_batch(payload, RECEIVED) is None
    got = decode_json_batch_indexed(payload, received_ms=RECEIVED)
    assert [e.index for e in got.errors] == [3] and len(got.readings) == 4
    assert got.errors[0].raw == json.dumps(good[3]).encode()


# --- the pipeline's batched dedupe and fleet look-up against their per-reading definitions ----

@given(st.lists(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 3)), max_size=6), max_size=6),
       st.lists(st.integers(0, 400), min_size=6, max_size=6))
@FAST
def test_deduper_fresh_is_seen_one_by_one(calls: list[list[tuple[str, int]]], steps: list[int]) -> None:
    batched, single = Deduper(500), Deduper(500)
    now = 0
    for keys, step in zip(calls, steps):
        now += step
        ks = [(d, t, 1) for d, t in keys]
        fresh = batched.fresh(ks, now)
        want = [not single.seen(k, now) for k in ks]
        assert (fresh if fresh is not None else [True] * len(ks)) == want
        assert (batched.current, batched.previous) == (single.current, single.previous)


_PIPE_READINGS = st.lists(st.builds(
    Reading, st.sampled_from(["s1", "s2", "g1", "u1", "new1", "new2"]), st.sampled_from(list(Kind)),
    st.sampled_from([Event.heartbeat, Event.alarm]), st.integers(0, 3), st.just(RECEIVED),
    st.none() | st.integers(0, 2),
    st.just({}), st.just({}), st.none() | st.sampled_from(["1:1:1", "1:1:2"]),
), max_size=10)


def _reference_process(p: Pipeline, batch: list[Submission], now: int) -> tuple[list[Reading], list[int], Flush]:
    """`Pipeline._process` as it was, one reading at a time: prepare, seen, _slot_for."""
    flush = Flush()
    accepted, slots = [], []
    for sub in batch:
        for index, r in enumerate(sub.readings):
            key, row = prepare(r, sub.source)
            if p.dedupe.seen(key, now):
                continue
            slot = p._slot_for(r, sub, index, flush, now)
            if slot < 0:
                continue
            accepted.append(r)
            slots.append(slot)
            flush.rows.append(row)
    return accepted, slots, flush


@given(st.lists(_PIPE_READINGS, min_size=1, max_size=3), st.sampled_from(["quarantine", "reject"]))
@FAST
def test_process_is_the_per_reading_definition(subs: list[list[Reading]], unknown: str) -> None:
    async def run() -> None:
        results = []
        for batched in (True, False):
            fleet = Fleet()
            fleet.upsert("s1", Kind.smoke)
            fleet.upsert("s2", Kind.smoke)
            fleet.upsert("g1", Kind.gas)
            fleet.upsert("u1", Kind.uitd)
            seen: list[tuple[list[Reading], ReadingColumns]] = []

            async def on_batch(
                readings: list[Reading],
                columns: ReadingColumns,
                into: list[tuple[list[Reading], ReadingColumns]] = seen,
            ) -> None:
                into.append((list(readings), columns))

            p = Pipeline(fleet=fleet, store=ReadingStore(None), on_batch=on_batch,  # type: ignore[arg-type] - never writes
                         metrics=IngestMetrics(CollectorRegistry()),
                         unknown_devices=unknown, clock=lambda: RECEIVED)
            loop = asyncio.get_running_loop()
            batch = [
                Submission(rs, "mqtt", f"src{k}", loop.create_future(), "json", b"raw") for k, rs in enumerate(subs)
            ]
            if batched:
                await p._process(batch, "tel")
                flush = p.buffer[0]
                accepted = seen[0][0] if seen else []
                slots = seen[0][1].slot.tolist() if seen else []
            else:
                accepted, slots, flush = _reference_process(p, batch, RECEIVED)
            results.append((accepted, slots, flush.rows, flush.new_devices,
                            [(d.source, d.reason, d.raw) for d in flush.dead_letters], list(fleet.device_ids)))
        assert results[0] == results[1]

    asyncio.run(run())

"""The hot path's shortcuts stay property-tested against the slow, obvious code they replace:
the orjson batch decoder against the element-by-element one, the one-pass column builder against
twelve passes, and the once-per-reading identity/row against its definition."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.batch import NUMERIC_COLUMNS, ReadingColumns
from devices.kinds import Event, Kind
from devices.reading import Reading
from ingest.codecs.json_report import _fast_batch, _slow_batch, decode_json_batch_indexed, encode_json_report
from ingest.storage import ROW_COLUMNS, canonical_json, identity, prepare
from tests.unit.test_codec_json import json_readings

RECEIVED = 1_795_341_600_000
FAST = settings(max_examples=300, deadline=None)

_ODD_ELEMENTS = st.sampled_from([
    b"1", b"null", b"[]", b'"x"', b"{}", b'{"device_id":"a","kind":"smoke","junk":[[[[1]]]]}',
    b'{"device_id":"a","kind":"smoke","data":{"v":NaN}}', b'{"device_id":"a","kind":"smoke","seq":12345678901234567890}',
    b'{"device_id":"a","kind":"smoke","data":{"big":123456789012345678901}}', b'{"device_id":"a","kind":"smoke","ts":1e400}',
    b'{"device_id":"a","kind":"smoke","data":{"s":"\\ud800"}}', b'{"device_id":"a","kind":"smoke","data":{"f":0.1000000000000000055511}}',
    b'{"device_id":"a","kind":"smoke","kind":"gas"}', b'{"device_id":"a","kind":"nope"}', b'{"device_id":"a",', b"\xff",
    b'{"device_id":"a","kind":"smoke","data":' + b"[" * 40 + b"]" * 40 + b"}",
    b'{"device_id":"a","kind":"smoke","ts":"2026-11-22T08:00:00Z","data":{"temperature_c":-0.0,"battery_pct":1E2}}',
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
    except Exception as e:  # noqa: BLE001 - the whole payload is refused: the fast path must not accept it
        assert _fast_batch(payload, RECEIVED) is None, e
        return
    fast = _fast_batch(payload, RECEIVED)
    if fast is not None:
        assert not slow.errors and fast == slow.readings
        assert [type(v) for r in fast for v in r.metrics.values()] == [type(v) for r in slow.readings for v in r.metrics.values()]
    got = decode_json_batch_indexed(payload, received_ms=RECEIVED)
    assert got.readings == slow.readings and got.errors == slow.errors
    for i in range(len(got.readings)):
        assert got.element(i) == slow.element(i)


def test_fast_batch_takes_the_fast_path_for_plain_batches() -> None:
    rs = [Reading(f"d{i}", Kind.smoke, Event.heartbeat, RECEIVED - 1 - i, RECEIVED, i, {"battery_pct": 80.0}) for i in range(3)]
    payload = b"[" + b",".join(encode_json_report(r) for r in rs) + b"]"
    assert _fast_batch(payload, RECEIVED) == rs
    assert decode_json_batch_indexed(payload, received_ms=RECEIVED).element(1) == encode_json_report(rs[1])


def _reference_columns(readings: list[Reading], slots: list[int]) -> dict[str, np.ndarray]:
    """The twelve-pass definition `from_readings` replaced."""
    n = len(readings)
    return {name: np.fromiter((get(r.metrics) for r in readings), np.float64, n) for name, get in NUMERIC_COLUMNS.items()}


_METRIC_VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**60), 2**60), st.booleans(), st.text(max_size=3),
    st.lists(st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-1000, 1000), st.booleans(), st.text(max_size=2)), max_size=4),
    st.none(),
)


@given(st.lists(st.dictionaries(st.sampled_from([*NUMERIC_COLUMNS, "cell_id", "valve", "current_a"]), _METRIC_VALUES), max_size=8))
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
        r.received_ms = r.ts_ms
    mem, row = prepare(r, "src")
    record = dict(zip(ROW_COLUMNS, row, strict=True))
    assert (mem, record["dedup"], record["untimed"]) == identity(r)
    assert record["untimed"] == (r.seq is not None and untimed)
    assert mem == (r.detector_id, -1 if record["untimed"] else r.ts_ms, record["dedup"])
    assert json.loads(record["metrics"]) == json.loads(json.dumps(r.metrics))
    assert (json.loads(record["extra"]) if record["extra"] else {}) == r.extra
    assert record["metrics"].encode() == canonical_json(r.metrics)
    assert (record["ts_ms"], record["received_ms"], record["seq"], record["source"]) == (r.ts_ms, r.received_ms, r.seq, "src")
    # a redelivered copy (untimed: received again later) has the same identity
    copy = Reading(**{f: getattr(r, f) for f in r.__slots__})  # type: ignore[attr-defined]
    if record["untimed"]:
        copy.ts_ms = copy.received_ms = r.received_ms + 5000
    assert prepare(copy, "other")[0][2] == mem[2]

"""JSON reports and gateway batches: the contract's example, every rejection, round trips."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.kinds import (
    ALL_METRICS,
    BREAKER_STATES,
    FAULT_CODES,
    GAS_TYPES,
    KIND_METRICS,
    NB_METRICS,
    VALVE_STATES,
    Event,
    Kind,
)
from devices.reading import Reading
from ingest.codecs.errors import DecodeError
from ingest.codecs.json_report import MAX_BATCH, decode_json_batch, decode_json_report, encode_json_report
from ingest.codecs.registry import decode_report
from ingest.codecs.values import METRIC_LIMIT, METRIC_TYPES

CONTRACT_EXAMPLE = b"""{"device_id": "868120301234567", "kind": "smoke", "ts": 1795341600000, "seq": 4711,
 "event": "alarm", "data": {"smoke_obscuration_pct_m": 4.2, "temperature_c": 31.5,
 "battery_pct": 86, "rsrp_dbm": -97, "sinr_db": 11, "ecl": 0, "pci": 301, "cell_id": "1A2B3C"}}"""


def report(**fields: Any) -> bytes:
    base: dict[str, Any] = {"device_id": "868120301234567", "kind": "smoke", "event": "report"}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


def test_contract_example() -> None:
    r = decode_json_report(CONTRACT_EXAMPLE, received_ms=1_795_341_600_250)
    assert r == Reading(
        device_id="868120301234567",
        kind=Kind.smoke,
        event=Event.alarm,
        ts_ms=1_795_341_600_000,
        received_ms=1_795_341_600_250,
        seq=4711,
        metrics={
            "smoke_obscuration_pct_m": 4.2,
            "temperature_c": 31.5,
            "battery_pct": 86.0,
            "rsrp_dbm": -97.0,
            "sinr_db": 11.0,
            "ecl": 0,
            "pci": 301,
            "cell_id": "1A2B3C",
        },
    )
    assert decode_report(CONTRACT_EXAMPLE, received_ms=1_795_341_600_250) == r


def test_topic_names_device_and_kind() -> None:
    r = decode_json_report(b'{"event": "heartbeat"}', received_ms=7, topic_kind=Kind.gas, topic_device="gw-1.dev:2")
    assert (r.device_id, r.kind, r.event, r.ts_ms, r.seq) == ("gw-1.dev:2", Kind.gas, Event.heartbeat, 7, None)
    same = decode_json_report(
        report(kind="smoke"), received_ms=7, topic_kind=Kind.smoke, topic_device="868120301234567"
    )
    assert same.kind is Kind.smoke


@pytest.mark.parametrize(
    ("payload", "topic_kind", "topic_device", "reason"),
    [
        (report(kind="gas"), Kind.smoke, None, "says kind 'gas' but the topic says 'smoke'"),
        (report(), None, "868120301234568", "says device_id '868120301234567' but the topic"),
        (b'{"event": "alarm"}', None, "dev1", "no kind and the topic names none"),
        (b'{"kind": "gas"}', Kind.gas, None, "no device_id"),
        (b'{"event": "report"}', Kind.gas, "bad id!", "device id 'bad id!'"),
    ],
)
def test_topic_disagreement(payload: bytes, topic_kind: Kind | None, topic_device: str | None, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_json_report(payload, received_ms=0, topic_kind=topic_kind, topic_device=topic_device)


def test_defaults_and_extra() -> None:
    r = decode_json_report(report(event=..., data={"fw": "1.2.3", "vendor": {"alarm_word": [1, 0]}}), received_ms=99)
    assert r.event is Event.report and r.ts_ms == 99 and r.metrics == {}
    assert r.extra == {"fw": "1.2.3", "vendor": {"alarm_word": [1, 0]}}


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2026-11-22T08:00:00Z", 1_795_334_400_000),
        ("2026-11-22T16:00:00+08:00", 1_795_334_400_000),
        ("2026-11-22t08:00:00.5z", 1_795_334_400_500),
        ("2026-11-22 08:00:00.123456-00:30", 1_795_336_200_123),
    ],
)
def test_rfc3339_times(text: str, ms: int) -> None:
    assert decode_json_report(report(ts=text), received_ms=0).ts_ms == ms


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30)), st.integers(-14 * 60, 14 * 60))
@settings(max_examples=200)
def test_rfc3339_against_datetime(moment: datetime, offset_min: int) -> None:
    aware = moment.replace(tzinfo=timezone(timedelta(minutes=offset_min)))
    expected = (aware - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    assert decode_json_report(report(ts=aware.isoformat()), received_ms=0).ts_ms == expected


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"ts": "2026-11-22T08:00:00"}, "not an RFC 3339 time"),
        ({"ts": "2026-02-30T08:00:00Z"}, "names no real date"),
        ({"ts": "yesterday"}, "not an RFC 3339 time"),
        ({"ts": -1}, "outside 1970"),
        ({"ts": 1.5}, "epoch milliseconds"),
        ({"ts": True}, "epoch milliseconds"),
        ({"ts": 10**30}, "outside 1970"),
        ({"seq": -1}, "seq must be an integer"),
        ({"seq": 2**32}, "seq must be an integer"),
        ({"seq": 2**31}, "seq must be an integer from 0 to 2147483647"),
        ({"seq": 3.0}, "seq must be an integer"),
        ({"seq": True}, "seq must be an integer"),
        ({"kind": "fridge"}, "kind must be one of"),
        ({"kind": 1}, "kind must be one of"),
        ({"event": "explosion"}, "unknown event 'explosion'"),
        ({"event": 2}, "unknown event 2"),
        ({"device_id": ""}, "device id ''"),
        ({"device_id": "x" * 65}, "device id"),
        ({"device_id": "dev\n"}, "device id"),
        ({"device_id": "设备"}, "device id"),
        ({"device_id": 868120301234567}, "device id"),
        ({"data": [1, 2]}, "data must be a JSON object"),
        ({"component": ""}, "component must be"),
        ({"data": {"battery_pct": 101}}, "battery_pct must be between 0 and 100"),
        ({"data": {"battery_pct": -0.5}}, "battery_pct must be between 0 and 100"),
        ({"data": {"battery_pct": "86"}}, "battery_pct must be a finite number"),
        ({"data": {"battery_pct": True}}, "battery_pct must be a finite number"),
        ({"data": {"ecl": 3}}, "ecl must be between 0 and 2"),
        ({"data": {"ecl": 1.5}}, "ecl must be a whole number"),
        ({"data": {"pci": -1}}, "pci must be between"),
        ({"data": {"pyrolysis_index": 100.5}}, "pyrolysis_index must be between 0 and 100"),
        ({"data": {"gas_type": "propane"}}, "gas_type must be one of methane, lpg, co, hydrogen"),
        ({"data": {"valve": "ajar"}}, "valve must be one of"),
        ({"data": {"breaker": "open"}}, "breaker must be one of"),
        ({"data": {"mains_ok": 1}}, "mains_ok must be true or false"),
        ({"data": {"cell_id": 1715004}}, "cell_id must be a string"),
        ({"data": {"cell_id": "a\u0000b"}}, "cell_id must be a string"),
        ({"data": {"fault_code": 3}}, "fault_code must be a string"),
        ({"data": {"residual_current_ma": "310"}}, "residual_current_ma must be a list"),
        ({"data": {"residual_current_ma": True}}, "residual_current_ma must be a list"),
        ({"data": {"residual_current_ma": []}}, "residual_current_ma must be a list of 1 to 64"),
        ({"data": {"cable_temp_c": [1, 2, 3, 4, 5]}}, "cable_temp_c must be a list of 1 to 4"),
        ({"data": {"voltage_v": [230, "231"]}}, "voltage_v must hold finite numbers only"),
        ({"data": {"voltage_v": [230, True]}}, "voltage_v must hold finite numbers only"),
        ({"data": {"power_kw": 10**400}}, "power_kw must be a finite number"),
        ({"data": {"co_ppm": 10_000.5}}, "co_ppm must be between 0 and 10000"),
        ({"data": {"co_ppm": -1}}, "co_ppm must be between 0 and 10000"),
        ({"data": {"flow_m3h": -0.01}}, "flow_m3h must be between 0 and"),
        ({"data": {"tilt_deg": 180.1}}, "tilt_deg must be between 0 and 180"),
        ({"data": {"port": 0}}, "port must be between 1 and 64"),
        ({"data": {"port": 65}}, "port must be between 1 and 64"),
        ({"data": {"port": 1.5}}, "port must be a whole number"),
        ({"data": {"ports_active": 65}}, "ports_active must be between 0 and 64"),
        ({"data": {"port_current_a": [1.0, -0.5]}}, "port_current_a must be between 0 and"),
        ({"data": {"port_power_w": -3}}, "port_power_w must be between 0 and"),
        ({"data": {"port_temp_c": [20] * 65}}, "port_temp_c must be a list of 1 to 64"),
        ({"data": {"note": "a\u0000b"}}, "data key 'note' holds text with a NUL"),
        ({"data": {"a\u0000": 1}}, "PostgreSQL cannot store"),
    ],
)
def test_rejections(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_json_report(report(**fields), received_ms=0)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "not valid JSON"),
        (b"[1]", "must be an object"),
        (b'{"device_id": "a", "kind": "smoke"', "not valid JSON"),
        (b'{"device_id": "a\xff", "kind": "smoke"}', "not UTF-8"),
        (b'{"device_id": "a", "kind": "smoke", "data": {"temperature_c": NaN}}', "NaN is not a JSON number"),
        (b'{"device_id": "a", "kind": "smoke", "data": {"temperature_c": -Infinity}}', "not a JSON number"),
        (b'{"device_id": "a", "kind": "smoke", "data": {"temperature_c": 1e400}}', "finite"),
        (b'{"device_id": "a", "kind": "smoke", "data": {"x": 1e400}}', "non-finite"),
        (b'{"device_id": "a", "kind": "smoke", "data": {"x": "\\ud800"}}', "unpaired surrogate"),
        (
            b'{"device_id": "a", "kind": "smoke", "data": {"x": ' + b"[" * 17 + b"]" * 17 + b"}}",
            "nested deeper than 16",
        ),
        (
            b'{"device_id": "a", "kind": "smoke", "data": {"x": ' + b"[" * 5000 + b"]" * 5000 + b"}}",
            "nested too deeply",
        ),
    ],
)
def test_bad_payloads(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_json_report(payload, received_ms=0)


@pytest.mark.parametrize("name", sorted(n for n, t in METRIC_TYPES.items() if t is list))
def test_a_bare_number_for_a_list_metric_is_a_list_of_one(name: str) -> None:
    r = decode_json_report(report(kind="charger", data={name: 35}), received_ms=0)
    assert r.metrics == {name: [35.0]} and type(r.metrics[name][0]) is float
    [b] = decode_json_batch(b"[" + report(kind="charger", data={name: 35}) + b"]", received_ms=0)[0]
    assert b.metrics == r.metrics


def test_extra_nesting_up_to_the_limit_is_kept() -> None:
    deep: Any = 1
    for _ in range(16):
        deep = [deep]
    assert decode_json_report(report(data={"x": deep}), received_ms=0).extra == {"x": deep}


# Batches
def test_batch_keeps_good_reports_and_exact_bad_elements() -> None:
    good = report(event="alarm").decode()
    other = report(device_id="gw1-7", kind="gas", data={"gas_lel_pct": 12.5}).decode()
    bad_kind = '{"device_id": "x",  "kind": "toaster"}'
    payload = f'[ {good},\n 17, {bad_kind}, {other}, [1,2], "s", {{"device_id": "y", "kind": "smoke", "ts": 1e999}} ]'
    readings, errors = decode_json_batch(payload.encode(), received_ms=5)
    assert [(r.device_id, r.kind, r.event) for r in readings] == [
        ("868120301234567", Kind.smoke, Event.alarm),
        ("gw1-7", Kind.gas, Event.report),
    ]
    assert readings[1].metrics == {"gas_lel_pct": 12.5}
    assert [(e.index, e.raw) for e in errors] == [
        (1, b"17"),
        (2, bad_kind.encode()),
        (4, b"[1,2]"),
        (5, b'"s"'),
        (6, b'{"device_id": "y", "kind": "smoke", "ts": 1e999}'),
    ]
    assert "kind must be one of" in errors[1].reason
    assert "not a JSON object" in errors[0].reason


def test_batch_element_that_is_too_deep_or_broken_fails_alone() -> None:
    deep = "[" * 3000 + "]" * 3000
    broken = '{"device_id": "a", "kind": }'
    payload = f'[{deep}, {broken}, {report().decode()}, "\\ud800"]'.encode()
    readings, errors = decode_json_batch(payload, received_ms=0)
    assert len(readings) == 1
    assert [e.index for e in errors] == [0, 1, 3]
    assert "nested too deeply" in errors[0].reason and errors[0].raw == deep.encode()
    assert errors[1].raw == broken.encode()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "not a JSON array"),
        (report(), "not a JSON array"),
        (b"[1, 2", "no ',' or ']'"),
        (b"[1 2]", "no ',' or ']'"),
        (b"[1,]", "missing a value"),
        (b"[1] x", "text after its end"),
        (b'["abc]', "unterminated"),
        (b"[[1, 2", "ends inside an array"),
        (b"[\xff]", "not UTF-8"),
        (("[" + ",".join(["1"] * (MAX_BATCH + 1)) + "]").encode(), "more than 10000"),
    ],
)
def test_bad_batches(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_json_batch(payload, received_ms=0)


def test_empty_batch() -> None:
    assert decode_json_batch(b" [ ] \n", received_ms=0) == ([], [])


# Round trips for every kind with metrics valid for it
_FINITE = st.floats(allow_nan=False, allow_infinity=False)
_METRIC = st.floats(-METRIC_LIMIT, METRIC_LIMIT)  # what a metric may hold (ingest.codecs.values)
_NUMBER_LIST = st.lists(_METRIC, min_size=1, max_size=3)
JSON_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "battery_pct": st.floats(0, 100),
    "battery_mv": st.floats(0, 10_000),
    "rsrp_dbm": _METRIC,
    "sinr_db": _METRIC,
    "ecl": st.integers(0, 2),
    "pci": st.integers(0, 503),
    "cell_id": st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=64),
    "smoke_obscuration_pct_m": _METRIC,
    "temperature_c": _METRIC,
    "gas_lel_pct": _METRIC,
    "gas_type": st.sampled_from(GAS_TYPES),
    "valve": st.sampled_from(VALVE_STATES),
    "mains_ok": st.booleans(),
    "residual_current_ma": _NUMBER_LIST,
    "cable_temp_c": st.lists(_METRIC, min_size=1, max_size=4),
    "voltage_v": _NUMBER_LIST,
    "current_a": _NUMBER_LIST,
    "power_kw": _METRIC,
    "arc_faults": st.integers(0, 1000),
    "pyrolysis_index": st.floats(0, 100),
    "breaker": st.sampled_from(BREAKER_STATES),
    "pressure_mpa": _METRIC,
    "level_m": _METRIC,
    "flow_m3h": st.floats(0, METRIC_LIMIT),
    "tilt_deg": st.floats(0, 180),
    "co_ppm": st.floats(0, 10_000),
    "port": st.integers(1, 64),
    "port_current_a": st.lists(st.floats(0, METRIC_LIMIT), min_size=1, max_size=64),
    "port_power_w": st.lists(st.floats(0, METRIC_LIMIT), min_size=1, max_size=8),
    "port_temp_c": st.lists(_METRIC, min_size=1, max_size=8),
    "ports_active": st.integers(0, 64),
    "fault_code": st.one_of(
        st.sampled_from(FAULT_CODES), st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s)
    ),
}
_JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63),
    _FINITE,
    st.text(max_size=10).filter(lambda s: "\x00" not in s),
)
_EXTRA = st.dictionaries(
    st.text(min_size=1, max_size=12).filter(lambda k: k not in ALL_METRICS and "\x00" not in k),
    st.recursive(
        _JSON_SCALARS,
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.text(max_size=5).filter(lambda k: "\x00" not in k), inner, max_size=3)
        ),
        max_leaves=8,
    ),
    max_size=4,
)
_DEVICE_IDS = st.from_regex(r"\A[A-Za-z0-9_.:-]{1,64}\Z")


@st.composite
def json_readings(draw: st.DrawFn) -> Reading:
    kind = draw(st.sampled_from(list(Kind)))
    names = sorted({*NB_METRICS, *KIND_METRICS[kind], "fault_code"})
    chosen = draw(st.lists(st.sampled_from(names), unique=True))
    ts_ms = draw(st.integers(0, 253_402_300_799_999))
    # a report with a time never decodes with ts_ms == received_ms (that marks an untimed one)
    received_ms = draw(st.integers(0, 2**42).filter(lambda v: v != ts_ms))
    return Reading(
        device_id=draw(_DEVICE_IDS),
        kind=kind,
        event=draw(st.sampled_from(list(Event))),
        ts_ms=ts_ms,
        received_ms=received_ms,
        seq=draw(st.none() | st.integers(0, 2**31 - 1)),
        metrics={name: draw(JSON_VALUES[name]) for name in chosen},
        extra=draw(_EXTRA),
        component=(
            draw(st.none() | st.from_regex(r"\A[0-9]{1,3}:[0-9]{1,3}:[0-9]{1,5}\Z")) if kind is Kind.uitd else None
        ),
    )


def test_every_metric_has_a_round_trip_strategy() -> None:
    assert set(JSON_VALUES) == set(ALL_METRICS)


@given(json_readings())
@settings(max_examples=200)
def test_json_round_trip(r: Reading) -> None:
    payload = encode_json_report(r)
    assert payload[:1] == b"{"
    assert decode_json_report(payload, received_ms=r.received_ms) == r
    assert decode_report(payload, received_ms=r.received_ms, topic_kind=r.kind, topic_device=r.device_id) == r


@given(st.lists(json_readings(), max_size=5))
@settings(max_examples=50)
def test_batch_round_trip(rs: list[Reading]) -> None:
    payload = b"[" + b",".join(encode_json_report(r) for r in rs) + b"]"
    readings, errors = decode_json_batch(payload, received_ms=0)
    assert errors == []
    assert [encode_json_report(r) for r in readings] == [encode_json_report(r) for r in rs]


def test_encode_refuses_non_finite_values() -> None:
    r = Reading("d1", Kind.smoke, Event.report, 0, 0, metrics={"temperature_c": math.nan})
    with pytest.raises(ValueError):
        encode_json_report(r)

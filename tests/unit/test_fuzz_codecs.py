"""Fuzzing every decoder: random bytes and mutated valid inputs (bit flips, truncation, extension,
wrong types, deep nesting, huge arrays, invalid UTF-8). Nothing but DecodeError may escape, and
whatever does decode is a valid, storable reading that survives a JSON round trip."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.kinds import ALL_METRICS, Event, Kind
from devices.reading import Reading
from ingest.codecs.ctwing import decode_ctwing
from ingest.codecs.errors import BatchItemError, DecodeError
from ingest.codecs.generic import verify_generic
from ingest.codecs.json_report import decode_json_batch, decode_json_report, encode_json_report
from ingest.codecs.mx1 import crc16_modbus, decode_mx1, encode_mx1
from ingest.codecs.onenet import decode_onenet, verify_onenet
from ingest.codecs.platform import PlatformResult
from ingest.codecs.profiles import ProfileRegistry
from ingest.codecs.registry import decode_report
from ingest.codecs.values import MAX_TS_MS, check_device_id, validate_metric

PROFILES = ProfileRegistry.load()
RECEIVED = 1_795_341_600_000
IMEI = "868120301234567"
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_reading(r: Reading) -> None:
    """A decoded reading is canonical, storable and survives encode -> decode as a JSON report."""
    check_device_id(r.device_id)
    assert isinstance(r.kind, Kind) and isinstance(r.event, Event)
    assert 0 <= r.ts_ms <= MAX_TS_MS
    assert r.received_ms == RECEIVED and (not r.untimed or r.ts_ms == RECEIVED)  # untimed: ts is the receive time
    assert r.seq is None or 0 <= r.seq < 2**31
    for name, value in r.metrics.items():
        assert name in ALL_METRICS and validate_metric(name, value) == value
    assert not ALL_METRICS & r.extra.keys()
    assert decode_json_report(encode_json_report(r), received_ms=RECEIVED) == r


def check_errors(errors: list[BatchItemError]) -> None:
    for e in errors:
        assert isinstance(e.reason, str) and e.reason and isinstance(e.raw, bytes) and e.index >= 0


def check_result(result: PlatformResult) -> None:
    for r in result.readings:
        check_reading(r)
    check_errors(result.errors)
    for n in result.notices:
        check_device_id(n.device_id)
        assert n.kind in ("online", "offline", "command_response")
        json.dumps(n.detail, allow_nan=False)


def _json(b: bytes) -> None:
    check_reading(decode_json_report(b, received_ms=RECEIVED))


def _json_topic(b: bytes) -> None:
    check_reading(decode_json_report(b, received_ms=RECEIVED, topic_kind=Kind.smoke, topic_device=IMEI))


def _batch(b: bytes) -> None:
    readings, errors = decode_json_batch(b, received_ms=RECEIVED)
    for r in readings:
        check_reading(r)
    check_errors(errors)


def _mx1(b: bytes) -> None:
    check_reading(decode_mx1(b, received_ms=RECEIVED))


def _report(b: bytes) -> None:
    check_reading(decode_report(b, received_ms=RECEIVED, topic_kind=Kind.gas, topic_device=IMEI))


def _ctwing(b: bytes) -> None:
    check_result(decode_ctwing(b, received_ms=RECEIVED, profiles=PROFILES, profile=None))


def _ctwing_profile(b: bytes) -> None:
    check_result(decode_ctwing(b, received_ms=RECEIVED, profiles=PROFILES, profile="ctwing-electrical-fire"))


def _onenet(b: bytes) -> None:
    check_result(decode_onenet(b, received_ms=RECEIVED, profiles=PROFILES, profile=None))


def _verifiers(b: bytes) -> None:
    assert verify_onenet("token", b) in (True, False)
    assert verify_generic("secret", b, b[:80].decode("utf-8", "replace")) in (True, False)


DECODERS: dict[str, Callable[[bytes], None]] = {
    "json": _json,
    "json_topic": _json_topic,
    "batch": _batch,
    "mx1": _mx1,
    "report": _report,
    "ctwing": _ctwing,
    "ctwing_profile": _ctwing_profile,
    "onenet": _onenet,
    "verifiers": _verifiers,
}


def run_all(data: bytes) -> None:
    for decode in DECODERS.values():
        try:
            decode(data)
        except DecodeError as e:
            assert isinstance(e.reason, str) and e.reason


# Valid seeds
JSON_SEEDS: list[dict[str, Any]] = [
    {
        "device_id": IMEI,
        "kind": "smoke",
        "ts": 1795341600000,
        "seq": 4711,
        "event": "alarm",
        "data": {
            "smoke_obscuration_pct_m": 4.2, "temperature_c": 31.5, "battery_pct": 86, "rsrp_dbm": -97,
            "cell_id": "1A2B3C",
        },
    },
    {
        "device_id": IMEI,
        "kind": "gas",
        "ts": "2026-11-22T08:00:00+08:00",
        "event": "fault",
        "data": {"fault_code": "sensor", "valve": "closed", "mains_ok": True},
    },
    {
        "device_id": "elec-7",
        "kind": "electrical",
        "event": "report",
        "data": {
            "residual_current_ma": [12, 310],
            "cable_temp_c": [40.5, 41, 39, 70],
            "voltage_v": [230, 231, 229],
            "breaker": "closed",
            "fw": {"v": [1, 2]},
        },
    },
    {"device_id": "uitd-1001", "kind": "uitd", "event": "alarm", "component": "1:2:34", "data": {}},
]
MX1_SEEDS = [
    encode_mx1(
        Reading(
            IMEI,
            Kind.smoke,
            Event.alarm,
            RECEIVED,
            0,
            seq=4711,
            metrics={"battery_pct": 86.0, "rsrp_dbm": -97.0, "smoke_obscuration_pct_m": 4.2, "cell_id": "1A2B3C"},
        )
    ),
    encode_mx1(
        Reading(
            IMEI,
            Kind.electrical,
            Event.alarm,
            RECEIVED,
            0,
            seq=1,
            metrics={
                "residual_current_ma": [310.0, 12.0],
                "cable_temp_c": [45.5, -3.2],
                "voltage_v": [230.1],
                "power_kw": 1.234,
                "breaker": "tripped",
            },
            extra={"mx1_tags": {"0x7f": "deadbeef"}},
        )
    ),
    encode_mx1(
        Reading(
            IMEI,
            Kind.gas,
            Event.fault,
            0,
            0,
            seq=65535,
            metrics={"gas_lel_pct": 12.5, "gas_type": "lpg", "fault_code": "valve", "mains_ok": True},
        )
    ),
]


def ctwing_env(message_type: str, payload: Any = None, **fields: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "upPacketSN": -1,
        "timestamp": RECEIVED,
        "productId": "15017088",
        "messageType": message_type,
        "deviceId": "d" + IMEI,
        "IMEI": IMEI,
    }
    if payload is not None:
        env["payload"] = payload
    return {**env, **fields}


CTWING_SEEDS: list[dict[str, Any]] = [
    ctwing_env(
        "dataReport",
        {"serviceData": {"Alarm_Status": 1, "Battery_Level": 86, "RSRP": 97, "Cell_ID": 1715004, "ECL": 1}},
    ),
    ctwing_env("eventReport", {"gas_sensor_state": 2, "gas_value": 30, "medium": 0, "valve_state": 2, "rsrp": 99}),
    ctwing_env(
        "dataReportTupUnion",
        [
            {"serviceData": {"alarm_type": 1, "temp_a": 80, "residual_current": 400, "breaker_state": 1}},
            {"serviceData": {"alarm_type": 8}},
        ],
    ),
    ctwing_env("dataReport", {"APPdata": base64.b64encode(MX1_SEEDS[0]).decode()}),
    ctwing_env("deviceOnlineOfflineReport", eventType=1),
    ctwing_env("commandResponse", taskId=7, result={"resultCode": "DELIVERED", "resultDetail": {"cmd_id": "c1"}}),
]
ONENET_MSGS: list[Any] = [
    [
        {"at": RECEIVED, "type": 1, "imei": IMEI, "dev_id": 5, "ds_id": "Alarm_Status", "value": 1},
        {"at": RECEIVED, "type": 1, "imei": IMEI, "dev_id": 5, "ds_id": "RSRP", "value": 97},
    ],
    {
        "at": RECEIVED,
        "type": 1,
        "dev_id": 6,
        "ds_id": "report",
        "value": {"gas_sensor_state": 1, "gas_value": 11, "battery_value": 90},
    },
    {"at": RECEIVED, "type": 2, "dev_id": 6, "status": 0, "login_type": 7},
]


def onenet_body(msg: Any) -> dict[str, Any]:
    return {"msg": msg, "msg_signature": "c2lnbmF0dXJl", "nonce": "abc"}


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


JSON_DOCS: list[Any] = [*JSON_SEEDS, JSON_SEEDS, *CTWING_SEEDS, *(onenet_body(m) for m in ONENET_MSGS)]
SEED_BYTES: list[bytes] = [*(_dumps(d) for d in JSON_DOCS), *MX1_SEEDS, _dumps([onenet_body(m) for m in ONENET_MSGS])]


def test_seeds_are_valid() -> None:
    for doc in JSON_SEEDS:
        check_reading(decode_json_report(_dumps(doc), received_ms=RECEIVED))
    for f in MX1_SEEDS:
        check_reading(decode_mx1(f, received_ms=RECEIVED))
    for env in CTWING_SEEDS:
        result = decode_ctwing(_dumps(env), received_ms=RECEIVED, profiles=PROFILES, profile=None)
        assert result.errors == [] and (result.readings or result.notices)
        check_result(result)
    for msg in ONENET_MSGS:
        result = decode_onenet(_dumps(onenet_body(msg)), received_ms=RECEIVED, profiles=PROFILES, profile=None)
        assert result.errors == [] and (result.readings or result.notices)


# Byte-level mutations
@st.composite
def byte_mutants(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "extend", "insert", "delete", "splice", "bad_utf8"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[pos:]
        elif op == "extend":
            data += draw(st.binary(min_size=1, max_size=40))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == "splice":
            data[pos : pos + 4] = draw(
                st.sampled_from([b"null", b"[]", b"{}", b'"', b"\\", b"1e999", b"NaN", b"-0", b"\xa5\x01"])
            )
        else:
            data[pos:pos] = draw(st.sampled_from([b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xe4\xb8"]))
    return bytes(data)


@given(st.binary(max_size=600))
@FUZZ
def test_random_bytes(data: bytes) -> None:
    run_all(data)


@given(st.binary(max_size=200).map(lambda b: b"{" + b) | st.binary(max_size=200).map(lambda b: b"\xa5\x01" + b))
@FUZZ
def test_random_bytes_behind_a_valid_first_byte(data: bytes) -> None:
    run_all(data)


@given(byte_mutants(SEED_BYTES))
@FUZZ
def test_mutated_seeds(data: bytes) -> None:
    run_all(data)


@given(byte_mutants(MX1_SEEDS))
@FUZZ
def test_mutated_mx1_frames_with_a_correct_crc(data: bytes) -> None:
    """A fixed CRC lets mutations reach the header and TLV checks behind it."""
    body = data[:-2] if len(data) > 2 else data
    for frame in (body + crc16_modbus(body).to_bytes(2, "big"), data):
        run_all(frame)
        run_all(_dumps(ctwing_env("dataReport", {"APPdata": base64.b64encode(frame).decode()})))


@given(
    st.lists(
        st.tuples(st.integers(0x00, 0xFF), st.binary(max_size=12)).map(lambda tv: bytes([tv[0], len(tv[1])]) + tv[1]),
        max_size=6,
    ),
    st.integers(0, 5),
    st.integers(0, 20),
)
@FUZZ
def test_mx1_random_fields(fields: list[bytes], kind: int, event: int) -> None:
    body = struct.pack(">BBBBQIHB", 0xA5, 1, kind, event, 2**64 - 1, 0, 0, len(fields)) + b"".join(fields)
    run_all(body + crc16_modbus(body).to_bytes(2, "big"))


# Structural JSON mutations
NASTY: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.just(10**5000 // 10**4000),
    st.floats(),
    st.text(max_size=8),
    st.sampled_from(
        ["\x00", "\ud800", "868120301234567", "smoke", "alarm", "1", "-97", "2026-11-22T08:00:00Z", "x" * 100]
    ),
    st.lists(st.integers(0, 3), max_size=4),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=3),
    st.integers(1, 400).map(lambda n: json.loads("[" * n + "]" * n)),
    st.just(list(range(12_000))),
    st.just([{"device_id": "d", "kind": "smoke"}] * 50),
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(_paths(v, (*prefix, i)))
    return out


def _copy(doc: Any) -> Any:
    return json.loads(json.dumps(doc))


def _node(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


@st.composite
def json_mutants(draw: st.DrawFn) -> Any:
    """A seed document with 1-3 values replaced, dropped or added (never the seed itself)."""
    doc = _copy(draw(st.sampled_from(JSON_DOCS)))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        op = draw(st.sampled_from(["replace", "drop", "add"]))
        new = _copy(draw(NASTY))
        if not path:
            doc = new
        elif op == "replace":
            _node(doc, path[:-1])[path[-1]] = new
        elif op == "drop":
            del _node(doc, path[:-1])[path[-1]]
        else:
            node = _node(doc, path)
            if isinstance(node, dict):
                keys = [
                    "data", "payload", "msg", "serviceData", "APPdata", "ts", "seq", "kind", "ecl", "cell_id", "type"
                ]
                node[draw(st.sampled_from(keys))] = new
            elif isinstance(node, list):
                node.append(new)
    return doc


@given(json_mutants())
@FUZZ
def test_structurally_mutated_json(doc: Any) -> None:
    data = _dumps(doc)
    run_all(data)
    if isinstance(doc, dict) and "msg" in doc:
        run_all(_dumps({**doc, "msg": json.dumps(doc["msg"], allow_nan=True)}))  # msg as a JSON string


def test_deep_nesting_and_huge_arrays() -> None:
    for n in (100, 1000, 100_000):
        deep_array = b"[" * n + b"]" * n
        deep_object = b'{"a":' * n + b"1" + b"}" * n
        for data in (
            deep_array,
            deep_object,
            b'{"msg": ' + deep_array + b"}",
            b'{"device_id": "d", "kind": "smoke", "data": {"x": ' + deep_array + b"}}",
        ):
            run_all(data)
    huge = b"[" + b",".join([b'{"device_id":"d","kind":"smoke"}'] * 10_001) + b"]"
    run_all(huge)
    run_all(b'{"msg": ' + huge + b"}")
    run_all(b"[" + b"1," * 200_000 + b"1]")

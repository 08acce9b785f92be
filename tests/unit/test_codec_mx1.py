"""MX1 frames: CRC-16/MODBUS, a frame checked byte by byte, every rejection, and round trips."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.kinds import FAULT_CODES, KIND_METRICS, NB_METRICS, Event, Kind
from devices.reading import Reading
from ingest.codecs.errors import DecodeError
from ingest.codecs.mx1 import crc16_modbus, decode_mx1, encode_mx1
from ingest.codecs.registry import decode_report


def crc_reference(data: bytes) -> int:
    """CRC-16/MODBUS bit by bit, straight from its definition."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def test_crc_check_value() -> None:
    assert crc16_modbus(b"123456789") == 0x4B37  # the catalogue's check value for CRC-16/MODBUS
    assert crc16_modbus(b"") == 0xFFFF


@given(st.binary(max_size=300))
@settings(max_examples=200)
def test_crc_matches_bitwise_reference(data: bytes) -> None:
    assert crc16_modbus(data) == crc_reference(data)


# Smoke alarm from IMEI 868120301234567 at 1795341600 s, seq 4711, four fields.
HAND_FRAME = bytes(
    [
        0xA5, 0x01,  # magic, version
        0x01,  # kind smoke
        0x02,  # event alarm
        0x00, 0x03, 0x15, 0x8D, 0x02, 0x2D, 0x69, 0x87,  # device id 868120301234567 (u64)
        0x6B, 0x02, 0xBD, 0x20,  # ts 1795341600 s
        0x12, 0x67,  # seq 4711
        0x04,  # four fields
        0x01, 0x01, 0x56,  # battery_pct 86
        0x03, 0x02, 0xFF, 0x9F,  # rsrp_dbm -97
        0x10, 0x02, 0x01, 0xA4,  # smoke 420 x 0.01 = 4.2 %/m
        0x11, 0x02, 0x01, 0x3B,  # temperature 315 x 0.1 = 31.5 C
        0x72, 0xE8,  # CRC-16/MODBUS of all the above, big-endian
    ]
)  # fmt: skip
HAND_READING = Reading(
    device_id="868120301234567",
    kind=Kind.smoke,
    event=Event.alarm,
    ts_ms=1_795_341_600_000,
    received_ms=1_795_341_601_234,
    seq=4711,
    metrics={"battery_pct": 86.0, "rsrp_dbm": -97.0, "smoke_obscuration_pct_m": 4.2, "temperature_c": 31.5},
)


def test_hand_built_frame_decodes() -> None:
    assert crc_reference(HAND_FRAME[:-2]) == 0x72E8
    assert decode_mx1(HAND_FRAME, received_ms=HAND_READING.received_ms) == HAND_READING


def test_hand_built_frame_encodes_byte_for_byte() -> None:
    assert encode_mx1(HAND_READING) == HAND_FRAME


def test_report_dispatch_checks_topic_against_frame() -> None:
    r = decode_report(HAND_FRAME, received_ms=1, topic_kind=Kind.smoke, topic_device="868120301234567")
    assert r.event is Event.alarm
    with pytest.raises(DecodeError, match="kind smoke but the topic says gas"):
        decode_report(HAND_FRAME, received_ms=1, topic_kind=Kind.gas)
    with pytest.raises(DecodeError, match="device 868120301234567 but the topic"):
        decode_report(HAND_FRAME, received_ms=1, topic_device="868120301234568")


def frame(head: bytes, fields: bytes = b"", n: int | None = None) -> bytes:
    """A frame with a correct CRC from a header (without n) and raw TLV bytes."""
    count = n if n is not None else _count(fields)
    body = head + bytes([count]) + fields
    return body + crc_reference(body).to_bytes(2, "big")


def _count(fields: bytes) -> int:
    i = n = 0
    while i < len(fields):
        i += 2 + fields[i + 1]
        n += 1
    return n


def head(
    kind: int = 1, event: int = 0, device: int = 868120301234567, ts_s: int = 1_795_341_600, seq: int = 1
) -> bytes:
    return struct.pack(">BBBBQIH", 0xA5, 0x01, kind, event, device, ts_s, seq)


def test_ts_zero_means_receive_time() -> None:
    r = decode_mx1(frame(head(ts_s=0)), received_ms=42_000)
    assert r.ts_ms == 42_000 and r.received_ms == 42_000


def test_unknown_tags_are_skipped_by_length_and_kept_raw() -> None:
    fields = bytes([0x7F, 0x03, 0xDE, 0xAD, 0x01]) + bytes([0x01, 0x01, 50]) + bytes([0xEE, 0x00])
    f = frame(head(), fields)
    r = decode_mx1(f, received_ms=0)
    assert r.metrics == {"battery_pct": 50.0}
    assert r.extra == {"mx1_tags": {"0x7f": "dead01", "0xee": ""}}
    assert decode_mx1(encode_mx1(r), received_ms=0) == r


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (b"", "shorter than the minimum"),
        (HAND_FRAME[:20], "shorter than the minimum"),
        (b"\xa4" + HAND_FRAME[1:], "magic"),
        (HAND_FRAME[:1] + b"\x02" + HAND_FRAME[2:], "version 2"),
        (HAND_FRAME[:-1] + bytes([HAND_FRAME[-1] ^ 1]), "CRC mismatch: frame says 0x72E9, computed 0x72E8"),
        (HAND_FRAME[:30] + bytes([HAND_FRAME[30] ^ 0x10]) + HAND_FRAME[31:], "CRC mismatch"),
        (frame(head(kind=0)), "kind code 0"),
        (frame(head(kind=5)), "kind code 5"),
        (frame(head(kind=7)), "kind code 7 is unknown .1 smoke, 2 gas, 3 electrical, 4 water, 6 charger"),
        (frame(head(event=30)), "event code 30"),
        (frame(head(), bytes([0x01, 0x01, 5]), n=2), "ends inside the header of field 2"),
        (frame(head(), bytes([0x01, 0x01, 5, 0x02]), n=2), "ends inside the header of field 2"),
        (frame(head(), bytes([0x01, 0x05, 5])), "says 5 bytes but only 1 remain"),
        (frame(head(), bytes([0x01, 0x01, 5, 0x09]), n=1), "1 bytes after its 1 fields"),
        (frame(head(), bytes([0x01, 0x02, 0, 5])), "has 2 bytes, expected 1"),
        (frame(head(), bytes([0x30, 0x03, 0, 1, 2])), "has 3 bytes, not a multiple of 2"),
        (frame(head(), bytes([0x30, 0x00])), "has 0 bytes"),
        (frame(head(), bytes([0x01, 0x01, 101])), "battery_pct must be between 0 and 100"),
        (frame(head(), bytes([0x05, 0x01, 3])), "ecl must be between 0 and 2"),
        (frame(head(), bytes([0x21, 0x01, 9])), "gas_type.*unknown code 9"),
        (frame(head(), bytes([0x23, 0x01, 2])), "mains_ok.*unknown code 2"),
        (frame(head(), bytes([0x31, 0x0A]) + bytes(10)), "cable_temp_c must be a list of 1 to 4"),
        (frame(head(kind=6), bytes([0x60, 0x01, 0])), "port must be between 1 and 64"),
        (frame(head(kind=6), bytes([0x60, 0x01, 65])), "port must be between 1 and 64"),
        (frame(head(kind=6), bytes([0x64, 0x01, 65])), "ports_active must be between 0 and 64"),
        (frame(head(kind=6), bytes([0x61, 0x03, 0, 1, 2])), "has 3 bytes, not a multiple of 2"),
        (frame(head(kind=6), bytes([0x62, 0x82]) + bytes(130)), "port_power_w must be a list of 1 to 64"),
        (frame(head(kind=4), bytes([0x43, 0x02, 0x07, 0x09])), "tilt_deg must be between 0 and 180"),
        (frame(head(kind=2), bytes([0x24, 0x02, 0x27, 0x11])), "co_ppm must be between 0 and 10000"),
        (frame(head(), bytes([0x01, 0x01, 5, 0x01, 0x01, 6])), "appears twice"),
        (frame(head(), bytes([0x7F, 0x00, 0x7F, 0x00])), "tag 0x7f appears twice"),
    ],
)
def test_bad_frames_are_decode_errors(bad: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_mx1(bad, received_ms=0)


def test_charger_frame_with_v2_tags() -> None:
    """Charger (kind 6) port 2 overheating: every v2 tag from its bytes, as CONTRACT §10 lays them out."""
    fields = bytes(
        [
            0x60, 0x01, 0x02,  # port 2
            0x61, 0x04, 0x01, 0x5E, 0x02, 0xBC,  # port_current_a 3.50, 7.00
            0x62, 0x04, 0x03, 0x20, 0x06, 0x40,  # port_power_w 800, 1600
            0x63, 0x04, 0x01, 0x2C, 0x02, 0xC6,  # port_temp_c 30.0, 71.0
            0x64, 0x01, 0x02,  # ports_active 2
            0x32, 0x02, 0x08, 0xFC,  # voltage_v 230.0
            0x30, 0x02, 0x00, 0x12,  # residual_current_ma 18
        ]
    )  # fmt: skip
    r = decode_mx1(frame(head(kind=6, event=23), fields), received_ms=0)
    assert (r.kind, r.event) == (Kind.charger, Event.overtemp)
    assert r.metrics == {
        "port": 2, "port_current_a": [3.5, 7.0], "port_power_w": [800.0, 1600.0], "port_temp_c": [30.0, 71.0],
        "ports_active": 2, "voltage_v": [230.0], "residual_current_ma": [18.0],
    }
    assert encode_mx1(r) == frame(head(kind=6, event=23), fields)


def test_water_and_co_tags() -> None:
    hydrant = frame(head(kind=4, event=17), bytes([0x42, 0x02, 0x04, 0xB0, 0x43, 0x02, 0x00, 0x7B]))
    assert decode_mx1(hydrant, received_ms=0).metrics == {"flow_m3h": 12.0, "tilt_deg": 12.3}
    co = decode_mx1(frame(head(kind=2, event=2), bytes([0x24, 0x02, 0x01, 0x2C, 0x21, 0x01, 3])), received_ms=0)
    assert co.metrics == {"co_ppm": 300.0, "gas_type": "co"}


@pytest.mark.parametrize("event", list(Event))
def test_every_event_code_is_the_catalogue_s(event: Event) -> None:
    assert decode_mx1(frame(head(event=int(event))), received_ms=0).event is event


def test_unknown_fault_code_is_kept_as_vendor_string() -> None:
    r = decode_mx1(frame(head(event=4), bytes([0x50, 0x01, 77])), received_ms=0)
    assert r.event is Event.fault and r.metrics == {"fault_code": "code_77"}
    dirty = decode_mx1(frame(head(event=4), bytes([0x50, 0x01, 2])), received_ms=0)
    assert dirty.metrics == {"fault_code": "chamber_dirty"}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"kind": Kind.uitd}, "no MX1 code"),
        ({"device_id": "abc"}, "decimal form"),
        ({"device_id": "0868120301234567"}, "decimal form"),
        ({"device_id": str(2**64)}, "MX1 header"),
        ({"seq": 65536}, "MX1 header"),
        ({"ts_ms": 2**32 * 1000}, "MX1 header"),
        ({"metrics": {"cell_id": "XYZ"}}, "not a hex string"),
        ({"metrics": {"battery_pct": 300.0}}, "does not fit"),
        ({"metrics": {"fault_code": "dusty"}}, "no MX1 code"),
        ({"metrics": {"rsrp_dbm": "low"}}, "not a number"),
        ({"metrics": {"smell": 1.0}}, "no MX1 tag"),
        ({"extra": {"mx1_tags": {"0x01": "00"}}}, "not an unknown tag"),
    ],
)
def test_encode_refuses_what_mx1_cannot_carry(change: dict[str, Any], reason: str) -> None:
    fields = {
        "device_id": HAND_READING.device_id,
        "kind": HAND_READING.kind,
        "event": HAND_READING.event,
        "ts_ms": HAND_READING.ts_ms,
        "received_ms": 0,
        "seq": 1,
    }
    with pytest.raises(ValueError, match=reason):
        encode_mx1(Reading(**{**fields, **change}))


# Round trips: every metric from raw integers in its field's range, as MX1 would carry it.
def _scaled(fmt: str, divisor: int, lo: int | None = None, hi: int | None = None) -> st.SearchStrategy[float]:
    bits = struct.calcsize(fmt) * 8
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if fmt.islower() else (0, 2**bits - 1)
    return st.integers(lo if lo is not None else low, hi if hi is not None else high).map(lambda raw: raw / divisor)


MX1_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "battery_pct": _scaled("B", 1, 0, 100),
    "battery_mv": _scaled("H", 1),
    "rsrp_dbm": _scaled("h", 1),
    "sinr_db": _scaled("b", 1),
    "ecl": st.integers(0, 2),
    "pci": st.integers(0, 65535),
    "cell_id": st.integers(0, 2**32 - 1).map(lambda v: format(v, "X")),
    "smoke_obscuration_pct_m": _scaled("H", 100),
    "temperature_c": _scaled("h", 10),
    "gas_lel_pct": _scaled("H", 10),
    "gas_type": st.sampled_from(["methane", "lpg", "co", "hydrogen"]),
    "valve": st.sampled_from(["open", "closed", "none"]),
    "mains_ok": st.booleans(),
    "residual_current_ma": st.lists(_scaled("H", 1), min_size=1, max_size=64),
    "cable_temp_c": st.lists(_scaled("h", 10), min_size=1, max_size=4),
    "voltage_v": st.lists(_scaled("H", 10), min_size=1, max_size=3),
    "current_a": st.lists(_scaled("H", 100), min_size=1, max_size=64),
    "power_kw": _scaled("I", 1000),
    "arc_faults": st.integers(0, 255),
    "pyrolysis_index": _scaled("B", 1, 0, 100),
    "breaker": st.sampled_from(["closed", "tripped"]),
    "pressure_mpa": _scaled("H", 1000),
    "level_m": _scaled("H", 100),
    "fault_code": st.one_of(st.sampled_from(FAULT_CODES), st.integers(9, 255).map(lambda n: f"code_{n}")),
    "co_ppm": _scaled("H", 1, 0, 10_000),
    "flow_m3h": _scaled("H", 100),
    "tilt_deg": _scaled("H", 10, 0, 1800),
    "port": st.integers(1, 64),
    "port_current_a": st.lists(_scaled("H", 100), min_size=1, max_size=64),
    "port_power_w": st.lists(_scaled("H", 1), min_size=1, max_size=64),
    "port_temp_c": st.lists(_scaled("h", 10), min_size=1, max_size=64),
    "ports_active": st.integers(0, 64),
}
MX1_KINDS = [k for k in Kind if k is not Kind.uitd]
#: Tags MX1 assigns (CONTRACT §2, §10): every other tag is unknown and kept raw.
KNOWN_TAGS = {
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x10, 0x11, 0x20, 0x21, 0x22, 0x23, 0x24, 0x30, 0x31, 0x32, 0x33, 0x34,
    0x35, 0x36, 0x37, 0x40, 0x41, 0x42, 0x43, 0x50, 0x60, 0x61, 0x62, 0x63, 0x64,
}


@st.composite
def mx1_readings(draw: st.DrawFn) -> Reading:
    kind = draw(st.sampled_from(MX1_KINDS))
    names = sorted({*NB_METRICS, *KIND_METRICS[kind], "fault_code"})
    chosen = draw(st.lists(st.sampled_from(names), unique=True))
    metrics = {name: draw(MX1_VALUES[name]) for name in chosen}
    unknown = draw(
        st.dictionaries(
            st.integers(0, 0xFF).filter(lambda t: t not in KNOWN_TAGS).map(lambda t: f"0x{t:02x}"),
            st.binary(max_size=20).map(bytes.hex),
            max_size=3,
        )
    )
    received = draw(st.integers(0, 2**42))
    return Reading(
        device_id=str(draw(st.integers(0, 2**64 - 1))),
        kind=kind,
        event=draw(st.sampled_from(list(Event))),
        ts_ms=draw(st.integers(1, 2**32 - 1)) * 1000,
        received_ms=received,
        seq=draw(st.integers(0, 65535)),
        metrics=metrics,
        extra={"mx1_tags": unknown} if unknown else {},
    )


def test_every_metric_has_a_round_trip_strategy() -> None:
    assert set(MX1_VALUES) == {*NB_METRICS, *(m for k in MX1_KINDS for m in KIND_METRICS[k]), "fault_code"}


@given(mx1_readings())
@settings(max_examples=200)
def test_mx1_round_trip(r: Reading) -> None:
    f = encode_mx1(r)
    assert crc_reference(f[:-2]) == int.from_bytes(f[-2:], "big")
    assert decode_mx1(f, received_ms=r.received_ms) == r

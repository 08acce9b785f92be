"""GB/T 26875.3 application data: the standard's examples byte by byte, request encoding, round
trips of every object type, length checks and fuzzing."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.codecs.errors import DecodeError
from ingest.codecs.gb26875_appdata import (
    OBJECT_TYPES,
    AnalogValue,
    AppData,
    ClockSync,
    ComponentConfig,
    ComponentRef,
    ComponentStatus,
    DutyCheck,
    OperationQuery,
    RawObjects,
    Reserved,
    SystemConfig,
    SystemOperation,
    SystemRef,
    SystemStatus,
    SystemTime,
    SystemVersion,
    UitdConfig,
    UitdOperation,
    UitdOperationQuery,
    UitdStatus,
    UitdTime,
    UitdVersion,
    decode_app_data,
    decode_description,
    decode_time,
    encode_app_data,
    encode_description,
    encode_time,
    request_command,
    request_data,
)

AT = datetime(2012, 9, 26, 9, 58, 2)
AT_BYTES = bytes.fromhex("02 3A 09 1A 09 0C")


def test_time_label_is_second_minute_hour_day_month_year() -> None:
    assert encode_time(AT) == AT_BYTES
    assert decode_time(AT_BYTES) == AT
    assert encode_time(None) == bytes(6) and decode_time(bytes(6)) is None
    assert decode_time(bytes.fromhex("3C 00 00 01 01 0C")) is None  # second 60
    assert decode_time(bytes.fromhex("00 00 00 1F 02 0C")) is None  # 31 February
    assert decode_time(bytes.fromhex("00 00 00 01 01 64")) is None  # year 100


def test_standard_fire_example_component_status() -> None:
    data = bytes.fromhex("02 01 01 01 28 0A 00 02 00 02 00" + " 20" * 30 + " 00" + " 02 3A 09 1A 09 0C")
    app = decode_app_data(data)
    assert app == AppData(2, (ComponentStatus(1, 1, 40, 0x0002000A, 0x0002, "", AT),))


def test_standard_device_examples() -> None:
    assert decode_app_data(bytes.fromhex("15 01 08") + AT_BYTES) == AppData(21, (UitdStatus(0x08, AT),))
    assert decode_app_data(bytes.fromhex("18 01 20 01") + AT_BYTES) == AppData(24, (UitdOperation(0x20, 1, AT),))
    assert decode_app_data(bytes.fromhex("19 01 01 01")) == AppData(25, (UitdVersion(1, 1),))
    assert decode_app_data(bytes.fromhex("1C 01") + AT_BYTES) == AppData(28, (UitdTime(AT),))


def test_component_status_encodes_byte_by_byte_with_a_gb18030_description() -> None:
    obj = ComponentStatus(1, 2, 42, 0x00070003, 0x0103, "烟感", AT)
    expected = (
        bytes.fromhex("02 01 01 02 2A 03 00 07 00 03 01")
        + bytes.fromhex("D1 CC B8 D0")  # 烟感 in GB 18030
        + bytes(27)
        + AT_BYTES
    )
    assert encode_app_data(AppData(2, (obj,))) == expected
    assert len(expected) == 2 + 46


def test_descriptions_trim_nul_and_space_padding() -> None:
    assert decode_description("三层".encode("gb18030") + b"   " + bytes(25)) == "三层"
    assert decode_description(b"A\x00B" + bytes(28)) == "A"
    with pytest.raises(ValueError):
        encode_description("防" * 16)  # 32 bytes


def test_request_data_matches_the_standard_examples() -> None:
    assert request_data(81) == bytes.fromhex("51 01 00")
    assert request_data(85) == bytes.fromhex("55 01 00")
    assert request_data(88) == bytes.fromhex("58 01 00")
    assert request_data(89) == bytes.fromhex("59 01 00")
    assert request_data(90, encode_time(AT)) == bytes.fromhex("5A 01 02 3A 09 1A 09 0C")
    assert request_data(91, b"\x0a") == bytes.fromhex("5B 01 0A")
    assert [request_command(t) for t in (61, 81, 88, 89, 90, 91)] == [4, 4, 4, 1, 1, 1]


def test_request_data_counts_objects_by_their_size() -> None:
    refs = ComponentRef(1, 1, 0x0002000A).pack() + ComponentRef(1, 2, 7).pack()
    assert request_data(62, refs) == bytes.fromhex("3E 02 01 01 0A 00 02 00 01 02 07 00 00 00")
    assert decode_app_data(request_data(62, refs)) == AppData(
        62, (ComponentRef(1, 1, 0x0002000A), ComponentRef(1, 2, 7))
    )
    assert request_data(61, bytes.fromhex("01 01")) == bytes.fromhex("3D 01 01 01")
    for bad in ((62, b"\x01\x01\x00"), (90, b""), (2, b"\x00"), (61, b"")):
        with pytest.raises(ValueError):
            request_data(*bad)


def test_length_must_match_the_declared_object_count() -> None:
    with pytest.raises(DecodeError, match="declares 2 objects of 46 bytes"):
        decode_app_data(bytes.fromhex("02 02") + bytes(46))
    with pytest.raises(DecodeError, match="carries 8"):
        decode_app_data(bytes.fromhex("15 01 08") + AT_BYTES + b"\x00")
    with pytest.raises(DecodeError, match="runs past"):
        decode_app_data(bytes.fromhex("1A 01 05 41 42"))
    with pytest.raises(DecodeError, match="follow"):
        decode_app_data(bytes.fromhex("1A 01 01 41 42"))
    with pytest.raises(DecodeError, match="lacks"):
        decode_app_data(b"\x02")


def test_unknown_types_are_kept_raw_and_reencode_identically() -> None:
    data = bytes.fromhex("80 03 DE AD BE EF")
    app = decode_app_data(data)
    assert app == AppData(0x80, (RawObjects(3, bytes.fromhex("DE AD BE EF")),))
    assert encode_app_data(app) == data


def test_encode_refuses_objects_of_the_wrong_type_or_range() -> None:
    with pytest.raises(ValueError):
        encode_app_data(AppData(1, (UitdStatus(1, AT),)))
    with pytest.raises(ValueError):
        encode_app_data(AppData(21, (UitdStatus(256, AT),)))
    with pytest.raises(ValueError):
        encode_app_data(AppData(6, (SystemConfig(1, 1, "x" * 256),)))


# --- property tests -------------------------------------------------------------------------

u8, u16, u32 = st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1)
times = st.one_of(
    st.none(),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)).map(
        lambda t: t.replace(microsecond=0)
    ),
)
chars = st.characters(codec="utf-8", exclude_characters="\x00")  # any code point but surrogates and NUL
descriptions = st.text(chars, max_size=31).filter(lambda s: len(s.encode("gb18030")) <= 31 and not s.endswith(" "))
texts = st.text(chars, max_size=60)

OBJECTS: dict[type, st.SearchStrategy[object]] = {
    SystemStatus: st.builds(SystemStatus, u8, u8, u16, times),
    ComponentStatus: st.builds(ComponentStatus, u8, u8, u8, u32, u16, descriptions, times),
    AnalogValue: st.builds(AnalogValue, u8, u8, u8, u32, u8, st.integers(-32768, 32767), times),
    SystemOperation: st.builds(SystemOperation, u8, u8, u8, u8, times),
    SystemVersion: st.builds(SystemVersion, u8, u8, u8, u8),
    SystemConfig: st.builds(SystemConfig, u8, u8, texts),
    ComponentConfig: st.builds(ComponentConfig, u8, u8, u8, u32, descriptions),
    SystemTime: st.builds(SystemTime, u8, u8, times),
    UitdStatus: st.builds(UitdStatus, u8, times),
    UitdOperation: st.builds(UitdOperation, u8, u8, times),
    UitdVersion: st.builds(UitdVersion, u8, u8),
    UitdConfig: st.builds(UitdConfig, texts),
    UitdTime: st.builds(UitdTime, times),
    SystemRef: st.builds(SystemRef, u8, u8),
    ComponentRef: st.builds(ComponentRef, u8, u8, u32),
    OperationQuery: st.builds(OperationQuery, u8, u8, u8, times),
    UitdOperationQuery: st.builds(UitdOperationQuery, u8, times),
    Reserved: st.builds(Reserved, u8),
    ClockSync: st.builds(ClockSync, times),
    DutyCheck: st.builds(DutyCheck, u8),
}


@st.composite
def app_data(draw: st.DrawFn) -> AppData:
    app_type = draw(st.sampled_from(sorted(OBJECT_TYPES)))
    objects = draw(st.lists(OBJECTS[OBJECT_TYPES[app_type]], max_size=4))
    return AppData(app_type, tuple(objects))  # type: ignore[arg-type]


def test_every_decoded_type_has_a_strategy() -> None:
    assert set(OBJECT_TYPES.values()) == set(OBJECTS)


@settings(max_examples=300)
@given(app_data())
def test_app_data_round_trips(app: AppData) -> None:
    data = encode_app_data(app)
    assert data[:2] == bytes((app.app_type, len(app.objects)))
    assert decode_app_data(data) == app


@settings(max_examples=100)
@given(st.integers(0, 255).filter(lambda t: t not in OBJECT_TYPES), u8, st.binary(max_size=200))
def test_unknown_types_round_trip(app_type: int, count: int, raw: bytes) -> None:
    data = bytes((app_type, count)) + raw
    assert encode_app_data(decode_app_data(data)) == data


@settings(max_examples=400)
@given(st.one_of(
    st.binary(max_size=300),
    st.sampled_from(sorted(OBJECT_TYPES)).flatmap(lambda t: st.binary(max_size=300).map(lambda b: bytes((t,)) + b)),
))
def test_fuzz_decode_app_data(data: bytes) -> None:
    try:
        app = decode_app_data(data)
    except DecodeError:
        return
    assert app.app_type == data[0]

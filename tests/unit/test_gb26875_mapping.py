"""GB/T 26875.3 frames to canonical readings: events from status bits (against a scalar
reference), device time in the device's zone, components, memory across objects, resets."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.kinds import Event, Kind
from ingest.codecs.errors import DecodeError
from ingest.codecs.gb26875 import (
    COMPONENT_FLAGS,
    SYSTEM_FLAGS,
    UITD_FLAGS,
    Command,
    Frame,
    decode_frame,
    frame_to_readings,
    map_frame,
    status_change,
)
from ingest.codecs.gb26875_appdata import (
    AnalogValue,
    AppData,
    ComponentStatus,
    RawObjects,
    SystemOperation,
    SystemStatus,
    UitdOperation,
    UitdStatus,
    UitdTime,
    encode_app_data,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
AT = datetime(2012, 9, 26, 9, 58, 2)
AT_MS = int(datetime(2012, 9, 26, 1, 58, 2, tzinfo=UTC).timestamp()) * 1000  # 09:58:02 +08:00
SENT = datetime(2012, 9, 26, 9, 58, 32)
RECEIVED = 1_700_000_000_000
FIRE_FRAME = bytes.fromhex(
    "40 40 01 00 01 01 20 3A 09 1A 09 0C 79 03 00 00 00 00 38 5B 01 00 00 00 30 00 02"
    " 02 01 01 01 28 0A 00 02 00 02 00" + " 20" * 30 + " 00 02 3A 09 1A 09 0C 46 23 23"
)


def send(*objects: object, app_type: int = 2, source: int = 889, command: int = Command.send) -> Frame:
    data = encode_app_data(AppData(app_type, objects)) if objects else b""  # type: ignore[arg-type]
    return Frame(7, (1, 0), SENT, source, 88888, command, data)


def readings(
    frame: Frame, previous: dict[str, int] | None = None, under_test: bool = False
) -> list[tuple[Event, str | None]]:
    got = frame_to_readings(frame, received_ms=RECEIVED, tz=SHANGHAI, under_test=under_test, previous=previous)
    return [(r.event, r.component) for r in got]


def comp(status: int, at: datetime | None = AT, addr: int = 17) -> ComponentStatus:
    return ComponentStatus(1, 1, 42, addr, status, "3层走廊烟感", at)


def test_standard_fire_example_is_an_alarm_of_its_component_in_device_time() -> None:
    [r] = frame_to_readings(decode_frame(FIRE_FRAME), received_ms=RECEIVED, tz=SHANGHAI)
    assert (r.device_id, r.kind, r.event, r.component) == ("uitd-889", Kind.uitd, Event.alarm, "1:1:131082")
    assert (r.ts_ms, r.received_ms, r.seq) == (AT_MS, RECEIVED, None)
    assert r.detector_id == "uitd-889:1:1:131082"
    assert r.extra["system_type_name"] == "火灾报警系统" and r.extra["component_type_name"] == "感烟火灾探测器"
    assert (r.extra["component_zone"], r.extra["component_point"]) == (10, 2)
    assert (r.extra["status"], r.extra["panel_status"], r.extra["panel_flag"]) == (2, ["fire"], "fire")


def test_fire_under_test_is_a_test_and_its_clearing_a_report() -> None:
    assert readings(send(comp(0x0002)), under_test=True) == [(Event.test, "1:1:17")]
    assert readings(send(comp(0x0001)), {"1:1:17": 0x0002}, under_test=True) == [(Event.report, "1:1:17")]


def test_clearing_needs_the_previous_status() -> None:
    assert readings(send(comp(0x0001)), {"1:1:17": 0x0003}) == [(Event.alarm_clear, "1:1:17")]
    assert readings(send(comp(0x0001))) == [(Event.report, "1:1:17")]  # nothing known to clear


def test_fault_carries_its_fault_code_and_power_fault_is_power_fail() -> None:
    [fault] = frame_to_readings(send(comp(0x0005)), received_ms=RECEIVED, tz=SHANGHAI)
    assert fault.event is Event.fault and fault.metrics == {"fault_code": "component"}
    assert readings(send(comp(0x0101))) == [(Event.power_fail, "1:1:17")]
    assert readings(send(comp(0x0001)), {"1:1:17": 0x0105}) == [
        (Event.fault_clear, "1:1:17"), (Event.power_restore, "1:1:17")
    ]


def test_panel_only_bits_become_a_report_with_their_names() -> None:
    got = frame_to_readings(send(comp(0x0061)), received_ms=RECEIVED, tz=SHANGHAI, previous={"1:1:17": 0x0041})
    [r] = got
    assert r.event is Event.report
    assert r.extra["panel_status"] == ["start", "feedback"]
    assert r.extra["panel_changes"] == ["start"]


def test_shield_and_supervisory_are_events_of_their_component() -> None:
    shield, report = frame_to_readings(
        send(comp(0x0029)), received_ms=RECEIVED, tz=SHANGHAI, previous={"1:1:17": 0x0041}
    )
    assert (shield.event, shield.component, shield.extra["panel_flag"]) == (Event.shield, "1:1:17", "shield")
    assert report.event is Event.report and report.extra["panel_changes"] == ["start", "feedback_clear"]
    assert readings(send(comp(0x0011))) == [(Event.supervisory, "1:1:17")]
    assert readings(send(comp(0x0001)), {"1:1:17": 0x0019}) == [
        (Event.shield_clear, "1:1:17"), (Event.supervisory_clear, "1:1:17")
    ]
    assert readings(send(comp(0x0001))) == [(Event.report, "1:1:17")]  # nothing known to clear


def test_fire_with_a_panel_only_change_gives_the_alarm_and_a_report() -> None:
    assert readings(send(comp(0x0022))) == [(Event.alarm, "1:1:17"), (Event.report, "1:1:17")]


def power(status: int, previous: int | None = None) -> list[tuple[Event, object, object, object]]:
    got = frame_to_readings(
        send(UitdStatus(status, AT), app_type=21), received_ms=RECEIVED, tz=SHANGHAI,
        previous=None if previous is None else {"uitd": previous},
    )
    return [(r.event, r.extra.get("power_faults"), r.extra.get("alarm_code"), r.extra.get("panel_changes"))
            for r in got]


def test_main_and_backup_power_faults_are_one_power_fail_saying_both() -> None:
    # UITD status bits 3 main power, 4 backup power (GB/T 26875.3 §8.2.1.8)
    assert power(0x09) == [(Event.power_fail, ["main_power_fault"], None, None)]
    assert power(0x19) == [(Event.power_fail, ["main_power_fault", "backup_power_fault"], "mains_and_backup", None)]
    # mains come back while the battery is still failed: still a power failure, no restore
    assert power(0x11, 0x19) == [(Event.power_fail, ["backup_power_fault"], None, ["main_power_fault_clear"]),
                                 (Event.report, None, None, ["main_power_fault_clear"])]
    assert power(0x01, 0x19) == [(Event.power_restore, None, None, None)]
    # a system's main (bit 8) and backup (bit 9) power
    got = frame_to_readings(send(SystemStatus(1, 1, 0x0305, AT), app_type=1), received_ms=RECEIVED, tz=SHANGHAI)
    assert [(r.event, r.extra.get("alarm_code")) for r in got] == [
        (Event.fault, None), (Event.power_fail, "mains_and_backup")
    ]


def test_device_status_example_main_power_fault() -> None:
    frame = decode_frame(bytes.fromhex(
        "40 40 01 00 01 01 20 3A 09 1A 09 0C 79 03 00 00 00 00 38 5B 01 00 00 00 09 00 02 15 01 08 02 3A 09 1A 09 0C"
        " 42 23 23"
    ))
    [r] = frame_to_readings(frame, received_ms=RECEIVED, tz=SHANGHAI)
    assert (r.event, r.component, r.ts_ms) == (Event.power_fail, None, AT_MS)
    assert r.extra["panel_flag"] == "main_power_fault"


def test_empty_send_is_a_heartbeat_at_the_frame_time_and_other_commands_give_nothing() -> None:
    [hb] = frame_to_readings(send(), received_ms=RECEIVED, tz=SHANGHAI)
    assert (hb.event, hb.ts_ms, hb.device_id) == (Event.heartbeat, AT_MS + 30_000, "uitd-889")
    assert readings(send(command=Command.confirm)) == []
    assert readings(send(comp(0x0002), command=Command.response)) == [(Event.alarm, "1:1:17")]


def test_missing_times_fall_back_to_the_frame_then_the_receive_time() -> None:
    [r] = frame_to_readings(send(comp(0x0002, at=None)), received_ms=RECEIVED, tz=SHANGHAI)
    assert r.ts_ms == AT_MS + 30_000
    untimed = Frame(1, (1, 0), None, 5, 0, Command.send)
    assert frame_to_readings(untimed, received_ms=RECEIVED, tz=SHANGHAI)[0].ts_ms == RECEIVED


def test_objects_of_one_frame_see_each_other_and_memory_is_returned() -> None:
    frame = send(comp(0x0003), comp(0x0001, addr=18), comp(0x0001))
    app = AppData(2, (comp(0x0003), comp(0x0001, addr=18), comp(0x0001)))
    got, memory = map_frame(frame, app, received_ms=RECEIVED, tz=SHANGHAI, under_test=False, previous={})
    assert [(r.event, r.component) for r in got] == [
        (Event.alarm, "1:1:17"), (Event.report, "1:1:18"), (Event.alarm_clear, "1:1:17")
    ]
    assert memory == {"1:1:17": 0x0001, "1:1:18": 0x0001}


def test_a_panel_reset_clears_the_fires_it_remembers() -> None:
    previous = {"1:1:17": 0x0003, "1:1:18": 0x0005, "1:2:9": 0x0003, "1:1": 0x0003}
    frame = send(SystemOperation(1, 1, 0x01, 4, AT), app_type=4)
    got, memory = map_frame(
        frame, AppData(4, (SystemOperation(1, 1, 0x01, 4, AT),)),
        received_ms=RECEIVED, tz=SHANGHAI, under_test=False, previous=previous,
    )
    assert [(r.event, r.component) for r in got] == [(Event.report, None), (Event.alarm_clear, "1:1:17")]
    assert got[0].extra["operations"] == ["reset"] and got[1].extra["cleared_by"] == "reset"
    assert memory == {"1:2:9": 0x0003}


def test_operations_map_to_mute_test_and_manual_alarm() -> None:
    ops = send(UitdOperation(0b0110_0110, 2, AT), app_type=24)  # mute, manual alarm, duty-check answer, test
    got = frame_to_readings(ops, received_ms=RECEIVED, tz=SHANGHAI)
    assert [r.event for r in got] == [Event.mute, Event.alarm, Event.test, Event.report]
    assert got[-1].extra["operations"] == ["mute", "manual_alarm", "duty_check_answer", "test"]
    assert got[-1].extra["operator"] == 2


def test_analog_values_with_a_canonical_metric_use_it() -> None:
    got = frame_to_readings(
        send(
            AnalogValue(11, 1, 92, 3, 3, 253, AT), AnalogValue(11, 1, 92, 3, 5, 350, AT),
            AnalogValue(11, 1, 92, 3, 9, 12, AT), app_type=3,
        ),
        received_ms=RECEIVED, tz=SHANGHAI,
    )
    assert [r.metrics for r in got] == [{"temperature_c": 25.3}, {"pressure_mpa": 0.035}, {}]
    assert got[2].extra["value"] == 1.2 and got[2].extra["unit"] == "A" and got[0].component == "11:1:3"


def test_water_analog_values_in_contract_units_marked_as_panel_analog() -> None:
    got = frame_to_readings(
        send(
            AnalogValue(11, 1, 99, 4, 4, 3, AT),  # 3 x 0.1 MPa
            AnalogValue(11, 1, 99, 5, 5, 1234, AT),  # 123.4 kPa
            AnalogValue(11, 1, 96, 6, 10, 125, AT),  # 12.5 L/s
            AnalogValue(11, 1, 92, 7, 2, 231, AT),  # tank level 2.31 m
            AnalogValue(11, 1, 92, 7, 9, 12, AT),  # 1.2 A: no canonical metric
            app_type=3,
        ),
        received_ms=RECEIVED, tz=SHANGHAI,
    )
    assert [r.metrics for r in got] == [
        {"pressure_mpa": 0.3}, {"pressure_mpa": 0.1234}, {"flow_m3h": 45.0}, {"level_m": 2.31}, {}
    ]
    assert [r.extra.get("source") for r in got] == ["gb26875_analog"] * 4 + [None]
    assert all(r.kind is Kind.uitd for r in got) and [r.component for r in got][:3] == ["11:1:4", "11:1:5", "11:1:6"]


def test_device_clock_report_gives_its_offset() -> None:
    [r] = frame_to_readings(send(UitdTime(AT), app_type=28), received_ms=AT_MS + 5_000, tz=SHANGHAI)
    assert r.event is Event.report and r.extra["clock_offset_s"] == -5.0
    assert r.extra["device_time"] == "2012-09-26T09:58:02"


def test_unknown_types_become_a_report_with_the_raw_bytes() -> None:
    [r] = frame_to_readings(send(RawObjects(2, b"\x01\x02"), app_type=200), received_ms=RECEIVED, tz=SHANGHAI)
    assert r.event is Event.report and r.extra == {"app_type": 200, "object_count": 2, "raw_hex": "0102"}


def test_undecodable_application_data_raises_decode_error() -> None:
    with pytest.raises(DecodeError):
        frame_to_readings(
            Frame(1, (1, 0), SENT, 1, 2, Command.send, b"\x02\x01\x00"), received_ms=RECEIVED, tz=SHANGHAI
        )


# --- status mapping against a plain reference --------------------------------------------------


def reference(flags: dict, status: int, previous: int | None, under_test: bool) -> tuple[list[Event], list[str]]:
    """Bit by bit, the rules of CONTRACT §4 written out plainly."""
    events: list[Event] = []
    changes: list[str] = []
    for bit in sorted(flags):
        flag = flags[bit]
        now = (status // 2**bit) % 2 == 1
        before = previous is not None and (previous // 2**bit) % 2 == 1
        if flag.name == "fire":
            on, off = (Event.test, None) if under_test else (Event.alarm, Event.alarm_clear)
        elif "fault" in flag.name and flag.name not in ("power_fault", "main_power_fault", "backup_power_fault"):
            on, off = Event.fault, Event.fault_clear
        elif flag.name in ("power_fault", "main_power_fault", "backup_power_fault"):
            on, off = Event.power_fail, Event.power_restore
        elif flag.name == "shield":
            on, off = Event.shield, Event.shield_clear
        elif flag.name == "supervisory":
            on, off = Event.supervisory, Event.supervisory_clear
        else:
            on, off = None, None
        if now and on is not None:
            events.append(on)
        elif now and not before:
            changes.append(flag.name)
        elif before and not now:
            if off is not None:
                events.append(off)
            else:
                changes.append(flag.name + "_clear")
    return events, changes


@settings(max_examples=300)
@given(
    st.sampled_from([COMPONENT_FLAGS, SYSTEM_FLAGS, UITD_FLAGS]),
    st.integers(0, 0xFFFF),
    st.one_of(st.none(), st.integers(0, 0xFFFF)),
    st.booleans(),
)
def test_status_change_matches_the_reference(flags: dict, status: int, previous: int | None, under_test: bool) -> None:
    change = status_change(flags, status, previous, under_test=under_test)
    assert ([e for e, _ in change.events], list(change.changes)) == reference(flags, status, previous, under_test)
    assert set(change.active) == {f.name for b, f in flags.items() if status >> b & 1}


@settings(max_examples=300)
@given(st.integers(0, 255), st.binary(max_size=200), st.integers(0, 2**48 - 1))
def test_fuzz_frame_to_readings_raises_only_decode_error(app_type: int, body: bytes, source: int) -> None:
    frame = Frame(1, (1, 0), SENT, source, 0, Command.send, bytes((app_type,)) + body)
    try:
        got = frame_to_readings(frame, received_ms=RECEIVED, tz=SHANGHAI)
    except DecodeError:
        return
    assert all(r.device_id == f"uitd-{source}" and r.kind is Kind.uitd for r in got)


def test_uitd_status_bits_channel_and_line_faults() -> None:
    got = frame_to_readings(send(UitdStatus(0x61, AT), app_type=21), received_ms=RECEIVED, tz=SHANGHAI)
    assert [(r.event, r.metrics.get("fault_code")) for r in got] == [(Event.fault, "comm"), (Event.fault, "line")]

"""CTWing AEP push envelopes: a sample for every shipped profile, transparent MX1, notices, errors."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from devices.kinds import Event, Kind
from devices.reading import Reading
from ingest.codecs.ctwing import decode_ctwing
from ingest.codecs.errors import DecodeError
from ingest.codecs.mx1 import encode_mx1
from ingest.codecs.platform import PlatformNotice, PlatformResult
from ingest.codecs.profiles import REJECTED, ProfileRegistry

PROFILES = ProfileRegistry.load()
IMEI = "868120301234567"
TS = 1_795_341_600_000
RECEIVED = TS + 1500


def envelope(message_type: str = "dataReport", payload: Any = None, **fields: Any) -> bytes:
    env: dict[str, Any] = {
        "upPacketSN": -1,
        "upDataSN": -1,
        "topic": "v1/up/ad",
        "timestamp": TS,
        "tenantId": "2000012345",
        "serviceId": "",
        "protocol": "lwm2m",
        "productId": "15017088",
        "messageType": message_type,
        "deviceType": "",
        "deviceId": "15017088" + IMEI,
        "IMEI": IMEI,
        "IMSI": "460113003141592",
    }
    if payload is not None:
        env["payload"] = payload
    env.update(fields)
    return json.dumps({k: v for k, v in env.items() if v is not ...}).encode()


def decode(body: bytes, profile: str | None = None) -> PlatformResult:
    return decode_ctwing(body, received_ms=RECEIVED, profiles=PROFILES, profile=profile)


def only_reading(body: bytes, profile: str | None = None) -> Reading:
    result = decode(body, profile)
    assert result.errors == [] and result.notices == []
    assert len(result.readings) == 1
    return result.readings[0]


def test_smoke_data_report() -> None:
    props = {
        "Alarm_Status": 1,
        "Battery_Level": 86,
        "RSRP": 97,
        "SINR": 11,
        "PCI": 301,
        "ECL": 0,
        "Cell_ID": 1715004,
        "Temperature": 31.5,
    }
    r = only_reading(envelope(payload={"serviceData": props}))
    assert r == Reading(
        device_id=IMEI,
        kind=Kind.smoke,
        event=Event.alarm,
        ts_ms=TS,
        received_ms=RECEIVED,
        metrics={
            "battery_pct": 86.0,
            "rsrp_dbm": -97.0,
            "sinr_db": 11.0,
            "pci": 301,
            "ecl": 0,
            "cell_id": "1A2B3C",
            "temperature_c": 31.5,
        },
    )


def test_smoke_event_report_clears() -> None:
    r = only_reading(envelope("eventReport", {"serviceId": "smoke_alarm", "Alarm_Status": 0, "Battery_Level": 85}))
    assert (r.kind, r.event, r.metrics) == (Kind.smoke, Event.alarm_clear, {"battery_pct": 85.0})
    periodic = only_reading(envelope(payload={"serviceData": {"Alarm_Status": 0, "Battery_Level": 85}}))
    assert periodic.event is Event.report


def test_gas_data_report() -> None:
    props = {
        "valve_state": 2,
        "temperature": 0,
        "medium": 0,
        "gas_value": 27,
        "gas_sensor_state": 2,
        "fan_state": 2,
        "battery_voltage": 1.1,
        "battery_value": 100,
        "rsrp": 1045,
        "sinr": -3,
    }
    r = only_reading(envelope(payload=props))
    assert (r.kind, r.event) == (Kind.gas, Event.alarm)
    assert r.metrics == {
        "valve": "closed",
        "gas_type": "methane",
        "gas_lel_pct": 27.0,
        "battery_pct": 100.0,
        "rsrp_dbm": -1045.0,
        "sinr_db": -3.0,
    }
    assert r.extra == {"temperature": 0, "fan_state": 2, "battery_voltage": 1.1, "alarm_level": "high"}


def test_gas_valve_event() -> None:
    r = only_reading(envelope("eventReport", {"serviceData": {"valve_state": 2, "gas_sensor_state": 0}}))
    assert (r.event, r.metrics) == (Event.valve_closed, {"valve": "closed"})
    alarm = only_reading(envelope("eventReport", {"serviceData": {"valve_state": 2, "gas_sensor_state": 1}}))
    assert (alarm.event, alarm.extra) == (Event.alarm, {"alarm_level": "low"})


def test_electrical_data_report_through_configured_profile() -> None:
    props = {
        "alarm_type": 1,
        "residual_current": 312,
        "temp_a": 41.5,
        "temp_b": 40,
        "temp_c": 39.5,
        "temp_n": 45,
        "voltage_a": 229.5,
        "voltage_b": 231,
        "voltage_c": 230.2,
        "current_a": 10.5,
        "current_b": 8,
        "current_c": 9.25,
        "active_power": 5420,
        "breaker_state": 0,
        "rsrp": 88,
        "firmware": "EF-2.1",
    }
    r = only_reading(envelope(payload={"serviceData": props}), profile="ctwing-electrical-fire")
    assert (r.kind, r.event) == (Kind.electrical, Event.alarm)
    assert r.metrics == {
        "residual_current_ma": [312.0],
        "cable_temp_c": [41.5, 40.0, 39.5, 45.0],
        "voltage_v": [229.5, 231.0, 230.2],
        "current_a": [10.5, 8.0, 9.25],
        "power_kw": 5.42,
        "breaker": "closed",
        "rsrp_dbm": -88.0,
    }
    assert r.extra == {"firmware": "EF-2.1", "alarm_code": "residual_current"}
    probe = only_reading(
        envelope(payload={"serviceData": {"alarm_type": 8, "temp_a": 40}}), profile="ctwing-electrical-fire"
    )
    assert (probe.event, probe.metrics["fault_code"]) == (Event.fault, "probe_open")


def test_product_id_selects_the_profile() -> None:
    gas = PROFILES.get("ctwing-gas")
    assert gas is not None
    listed = gas.model_copy(
        update={"platform": {"ctwing": gas.platform["ctwing"].model_copy(update={"product_ids": ["15017088"]})}}
    )
    registry = ProfileRegistry([*PROFILES, listed])
    result = decode_ctwing(
        envelope(payload={"serviceData": {"rsrp": 90}}), received_ms=0, profiles=registry, profile=None
    )
    assert [r.kind for r in result.readings] == [Kind.gas]


def test_tup_union_payload_list_decodes_each_item() -> None:
    body = envelope(
        "dataReportTupUnion",
        [
            {"serviceId": "smoke", "serviceData": {"Alarm_Status": 0, "Battery_Level": 80}},
            {"serviceData": {"Battery_Level": "lots"}},
            "junk",
            {"serviceData": {"unheard_of": 1}},
        ],
    )
    result = decode(body, profile="ctwing-smoke")
    assert [(r.event, r.metrics) for r in result.readings] == [
        (Event.report, {"battery_pct": 80.0}),
        (Event.report, {}),
        (Event.report, {}),
    ]
    assert result.readings[2].extra == {"unheard_of": 1}  # a configured profile keeps what it does not know
    assert result.readings[1].extra[REJECTED]["Battery_Level"].startswith("'lots' is not a finite number")
    assert [(e.index, e.raw) for e in result.errors] == [(2, b'"junk"')]
    assert result.readings[0].ts_ms == TS


def test_imei_absent_uses_device_id_and_missing_time_uses_receive_time() -> None:
    r = only_reading(envelope(payload={"serviceData": {"Alarm_Status": 1}}, IMEI=..., timestamp=...))
    assert (r.device_id, r.ts_ms) == (IMEI, RECEIVED)  # an NB-IoT deviceId is productId + IMEI
    props = {"serviceData": {"Alarm_Status": 1}}
    assert only_reading(envelope(payload=props, IMEI=..., deviceId="15017088dtu-7")).device_id == "15017088dtu-7"
    assert only_reading(envelope(payload=props, IMEI=..., productId=...)).device_id == "15017088" + IMEI


def app_data(frame: bytes) -> dict[str, str]:
    return {"APPdata": base64.b64encode(frame).decode()}


def test_transparent_mx1_frame() -> None:
    sent = Reading(IMEI, Kind.gas, Event.alarm, TS - 60_000, 0, seq=9, metrics={"gas_lel_pct": 31.5, "valve": "closed"})
    r = only_reading(envelope(payload=app_data(encode_mx1(sent)), protocol="tcp"))
    assert (r.device_id, r.kind, r.event, r.ts_ms, r.seq, r.metrics) == (
        IMEI,
        Kind.gas,
        Event.alarm,
        TS - 60_000,
        9,
        sent.metrics,
    )
    untimed = Reading(IMEI, Kind.smoke, Event.heartbeat, 0, 0, seq=1)
    assert only_reading(envelope(payload=app_data(encode_mx1(untimed)))).ts_ms == TS  # frame ts 0: the platform's time


def test_transparent_frames_that_fail() -> None:
    other = encode_mx1(Reading("868120301234999", Kind.smoke, Event.alarm, TS, 0, seq=1))
    vendor = bytes.fromhex("68 10 01 02 03 04 16".replace(" ", ""))
    bad_crc = bytearray(encode_mx1(Reading(IMEI, Kind.smoke, Event.alarm, TS, 0, seq=1)))
    bad_crc[-1] ^= 0xFF
    result = decode(
        envelope(
            "dataReportTupUnion",
            [app_data(other), app_data(vendor), {"APPdata": "@@not base64"}, app_data(bytes(bad_crc))],
        )
    )
    assert result.readings == []
    reasons = [e.reason for e in result.errors]
    assert "the MX1 frame says device 868120301234999 but the CTWing envelope says IMEI '868120301234567'" == reasons[0]
    assert "7-byte vendor frame starting with 0x68" in reasons[1]
    assert "not valid base64" in reasons[2]
    assert "MX1 CRC mismatch" in reasons[3]
    assert result.errors[1].raw == vendor  # the vendor frame itself goes to dead letters
    assert result.errors[2].raw == b'{"APPdata":"@@not base64"}'


def test_online_offline_notices() -> None:
    online = decode(envelope("deviceOnlineOfflineReport", eventType=1))
    assert online.readings == [] and online.errors == []
    assert online.notices == [
        PlatformNotice(
            "online", IMEI, TS, {"productId": "15017088", "deviceId": "15017088" + IMEI, "tenantId": "2000012345"}
        )
    ]
    offline = decode(envelope("deviceOnlineOfflineReport", eventType="0", IMEI=...))
    assert [(n.kind, n.device_id) for n in offline.notices] == [("offline", IMEI)]  # the IMEI inside deviceId
    with pytest.raises(DecodeError, match="eventType 7"):
        decode(envelope("deviceOnlineOfflineReport", eventType=7))


def test_command_response_notice() -> None:
    body = envelope(
        "commandResponse", taskId=48, result={"resultCode": "SUCCESSFUL", "resultDetail": {"cmd_id": "c-1", "ok": True}}
    )
    [notice] = decode(body).notices
    assert (notice.kind, notice.device_id, notice.ts_ms) == ("command_response", IMEI, TS)
    assert (notice.detail["result_code"], notice.detail["state"]) == ("SUCCESSFUL", "acked")
    assert (notice.detail["task_id"], notice.detail["cmd_id"]) == (48, "c-1")
    states = {
        code: decode(envelope("commandResponse", result={"resultCode": code})).notices[0].detail["state"]
        for code in ("SENT", "DELIVERED", "SUCCESSFUL", "FAILED", "TIMEOUT")
    }
    assert states == {"SENT": "sent", "DELIVERED": "sent", "SUCCESSFUL": "acked", "FAILED": "failed", "TIMEOUT": "sent"}
    with pytest.raises(DecodeError, match=r"no result\.resultCode"):
        decode(envelope("commandResponse", result={"resultDetail": {}}))


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[]", "not a CTWing push"),
        (b'{"msg": {}}', "not a CTWing push"),
        (b"\xff", "not UTF-8"),
        (envelope("deviceRegister"), "messageType 'deviceRegister' is not one"),
        (envelope("dataReport"), "has no payload"),
        (envelope("dataReport", []), "has no payload"),
        (envelope(payload={"serviceData": {}}, IMEI=..., deviceId=...), "names no device"),
        (envelope(payload={"serviceData": {}}, IMEI="bad imei"), "device id 'bad imei'"),
        (envelope(payload={"serviceData": {}}, timestamp="noon"), "RFC 3339"),
        (envelope(payload={"serviceData": {"deep": nested(40)}}), "nested deeper than 32"),
    ],
)
def test_not_an_envelope(body: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode(body)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"serviceData": []}, "serviceData is not a JSON object"),
        ({"serviceData": {}}, "has no properties"),
        ({"serviceId": "x"}, "has no properties"),
        ({"serviceData": {"mystery": 1}}, "no ctwing device profile knows any of the properties mystery"),
        ({"APPdata": 12}, "not a base64 string"),
    ],
)
def test_payload_errors_are_items(payload: Any, reason: str) -> None:
    result = decode(envelope(payload=payload))
    assert result.readings == []
    [error] = result.errors
    assert error.index == 0 and reason in error.reason


# v2 device classes (CONTRACT §10): one sample of each shipped profile, found by its property names.
def test_hydrant_profile() -> None:
    props = {"hydrant_pressure": 320, "hydrant_flow": 12.5, "hydrant_tilt": 3.5, "hydrant_valve": 1,
             "hydrant_alarm": 0, "hydrant_battery": 90, "hydrant_rsrp": 101}
    r = only_reading(envelope(payload={"serviceData": props}))
    assert (r.kind, r.event) == (Kind.water, Event.hydrant_open)
    assert r.metrics == {"pressure_mpa": 0.32, "flow_m3h": 12.5, "tilt_deg": 3.5, "battery_pct": 90.0,
                         "rsrp_dbm": -101.0}
    closed = only_reading(envelope("eventReport", {"hydrant_valve": 0, "hydrant_level": 231}))
    assert (closed.event, closed.metrics) == (Event.hydrant_close, {"level_m": 2.31})
    knocked = only_reading(envelope(payload={"hydrant_alarm": 4, "hydrant_tilt": 80}))
    assert (knocked.event, knocked.extra, knocked.metrics) == (Event.impact, {"alarm_code": "tilt"}, {"tilt_deg": 80.0})
    low = only_reading(envelope(payload={"hydrant_alarm": 1, "hydrant_pressure": 40}))
    assert (low.event, low.extra["alarm_code"]) == (Event.alarm, "water_pressure_low")
    assert low.metrics == {"pressure_mpa": 0.04}


def test_charger_profile() -> None:
    props = {"charge_event": 4, "port_no": 3, "port_currents": [350, 0, 512], "port_powers": [800, 0, 1200],
             "port_temps": [312, 250, 735], "supply_voltage": 229.5, "leakage_current": 12, "ports_in_use": 2,
             "pile_rsrp": 95}
    r = only_reading(envelope("eventReport", props))
    assert (r.kind, r.event) == (Kind.charger, Event.overtemp)
    assert r.metrics == {
        "port": 3, "port_current_a": [3.5, 0.0, 5.12], "port_power_w": [800.0, 0.0, 1200.0],
        "port_temp_c": [31.2, 25.0, 73.5], "voltage_v": [229.5], "residual_current_ma": [12.0], "ports_active": 2,
        "rsrp_dbm": -95.0,
    }
    cut = only_reading(envelope("eventReport", {"charge_event": 6, "port_no": 3}))
    assert (cut.event, cut.metrics) == (Event.port_cutoff, {"port": 3})
    bad_port = only_reading(envelope(payload={"charge_event": 0, "port_no": 0, "ports_in_use": 1}))
    assert bad_port.metrics == {"ports_active": 1}
    assert "port must be between 1 and 64" in bad_port.extra[REJECTED]["port_no"]


def test_pyrolysis_profile_maps_the_vendor_scale_to_the_alarm_set_value() -> None:
    r = only_reading(envelope(payload={"pyrolysis_value": 260, "pyrolysis_state": 0, "pyrolysis_rsrp": 88}))
    assert (r.kind, r.event, r.metrics) == (Kind.electrical, Event.report, {"pyrolysis_index": 52.0, "rsrp_dbm": -88.0})
    alarm = only_reading(envelope("eventReport", {"pyrolysis_value": 730, "pyrolysis_state": 1}))
    assert (alarm.event, alarm.extra) == (Event.alarm, {"alarm_code": "pyrolysis"})
    assert alarm.metrics == {"pyrolysis_index": 100.0}  # above the alarm set value
    at_set_value = only_reading(envelope(payload={"pyrolysis_value": 500}))
    assert at_set_value.metrics == {"pyrolysis_index": 100.0}
    assert only_reading(envelope("eventReport", {"pyrolysis_state": 0})).event is Event.alarm_clear


def test_co_profile_is_a_gas_detector_of_co() -> None:
    r = only_reading(envelope(payload={"co_value": 180, "co_state": 2, "co_battery": 77, "co_sinr": 6}))
    assert (r.kind, r.event) == (Kind.gas, Event.alarm)
    assert r.metrics == {"gas_type": "co", "co_ppm": 180.0, "battery_pct": 77.0, "sinr_db": 6.0}
    assert r.extra == {"alarm_code": "co", "alarm_level": "high"}
    beat = only_reading(envelope(payload={"co_value": 0, "co_state": 0}))
    assert (beat.event, beat.metrics) == (Event.report, {"gas_type": "co", "co_ppm": 0.0})


def test_arc_breaker_profile() -> None:
    props = {"breaker_event": 1, "switch_state": 1, "arc_count": 17, "line_leakage": 8, "line_voltage": 221.3,
             "line_current": 31.5, "line_temp": 48, "line_power": 6900}
    r = only_reading(envelope("eventReport", props))
    assert (r.kind, r.event, r.extra) == (Kind.electrical, Event.alarm, {"alarm_code": "arc_fault"})
    assert r.metrics == {"breaker": "tripped", "arc_faults": 17, "residual_current_ma": [8.0], "voltage_v": [221.3],
                         "current_a": [31.5], "cable_temp_c": [48.0], "power_kw": 6.9}
    closed = only_reading(envelope("eventReport", {"switch_state": 0, "breaker_event": 0}))
    assert (closed.event, closed.metrics) == (Event.breaker_closed, {"breaker": "closed"})
    periodic = only_reading(envelope(payload={"switch_state": 0, "breaker_event": 0, "arc_count": 0}))
    assert periodic.event is Event.report

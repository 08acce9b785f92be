"""Huawei IoTDA (notify_data, legacy deviceDataChanged) and Alibaba Cloud IoT (items, params, events,
status) messages through the shipped profiles."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devices.kinds import Event, Kind
from ingest.codecs.aliyun import decode_aliyun, envelope
from ingest.codecs.errors import DecodeError
from ingest.codecs.iotda import decode_iotda, huawei_time
from ingest.codecs.platform import PlatformResult
from ingest.codecs.profiles import REJECTED, ProfileRegistry

PROFILES = ProfileRegistry.load()
RECEIVED = 1_795_341_601_500
TS = 1_795_341_600_000  # 2026-11-22T10:00:00Z
HW_TS = "20261122T100000Z"
IMEI = "868120301234567"


def notify(services: list[Any], *, resource: str = "device.property", event: str = "report", **header: Any) -> bytes:
    head = {"app_id": "app1", "device_id": f"prod1_{IMEI}", "node_id": IMEI, "product_id": "prod1",
            "gateway_id": f"prod1_{IMEI}", **header}
    return json.dumps({"resource": resource, "event": event, "event_time": HW_TS,
                       "notify_data": {"header": head, "body": {"services": services}}}).encode()


def iotda(body: bytes, profile: str | None = None) -> PlatformResult:
    return decode_iotda(body, received_ms=RECEIVED, profiles=PROFILES, profile=profile)


def aliyun(body: bytes, profile: str | None = None) -> PlatformResult:
    return decode_aliyun(body, received_ms=RECEIVED, profiles=PROFILES, profile=profile)


def test_huawei_compact_time() -> None:
    assert huawei_time(HW_TS, 0) == TS
    assert huawei_time("2026-11-22T10:00:00Z", 0) == TS
    assert huawei_time(None, 7) == 7
    with pytest.raises(DecodeError):
        huawei_time("20261399T080000Z", 0)


def test_iotda_property_report_merges_services_of_one_time() -> None:
    result = iotda(notify([
        {"service_id": "Smoke", "properties": {"Alarm_Status": 1}, "event_time": HW_TS},
        {"service_id": "Battery", "properties": {"Battery_Level": 57, "RSRP": 97}, "event_time": HW_TS},
    ]))
    assert result.errors == [] and len(result.readings) == 1
    r = result.readings[0]
    assert (r.device_id, r.kind, r.event, r.ts_ms, r.received_ms) == (IMEI, Kind.smoke, Event.alarm, TS, RECEIVED)
    assert r.metrics["battery_pct"] == 57 and r.metrics["rsrp_dbm"] == -97


def test_iotda_services_at_different_times_are_separate_readings() -> None:
    result = iotda(notify([
        {"service_id": "Smoke", "properties": {"Alarm_Status": 0}, "event_time": HW_TS},
        {"service_id": "Smoke", "properties": {"Alarm_Status": 1}, "event_time": "20261122T100005Z"},
    ]))
    assert sorted((r.ts_ms, r.event) for r in result.readings) == [(TS, Event.report), (TS + 5000, Event.alarm)]


def test_iotda_device_is_the_node_id_else_the_device_id() -> None:
    body = json.loads(notify([{"service_id": "S", "properties": {"Alarm_Status": 0}}]))
    del body["notify_data"]["header"]["node_id"]
    (r,) = iotda(json.dumps(body).encode()).readings
    assert r.device_id == f"prod1_{IMEI}" and r.ts_ms == TS  # the envelope's time when the service has none


def test_iotda_product_id_selects_an_operator_profile() -> None:
    own = PROFILES.get("iotda-smoke")
    assert own is not None
    copy = own.model_copy(update={"name": "vendor-x", "platform": {"iotda": own.platform["iotda"].model_copy(
        update={"product_ids": ["prodX"]})}, "properties": {}})
    registry = ProfileRegistry([*PROFILES, copy])
    (r,) = decode_iotda(notify([{"service_id": "S", "properties": {"Alarm_Status": 1, "Battery_Level": 50}}],
                               product_id="prodX"), received_ms=RECEIVED, profiles=registry, profile=None).readings
    assert "battery_pct" not in r.metrics and r.extra["Battery_Level"] == 50  # vendor-x maps no properties


def test_iotda_bad_service_is_an_error_of_its_own() -> None:
    bad, good = {"service_id": "S", "properties": {}}, {"service_id": "T", "properties": {"Alarm_Status": 1}}
    result = iotda(notify([bad, good]))
    assert len(result.readings) == 1 and [e.index for e in result.errors] == [0]


def test_iotda_value_out_of_range_is_kept_not_fatal() -> None:
    (r,) = iotda(notify([{"service_id": "S", "properties": {"Alarm_Status": 1, "Battery_Level": 180}}])).readings
    assert r.event == Event.alarm and "Battery_Level" in r.extra[REJECTED]


def test_iotda_status_update_is_a_notice() -> None:
    body = json.loads(notify([], resource="device.status", event="update"))
    body["notify_data"]["body"] = {"status": "OFFLINE", "last_online_time": HW_TS}
    result = iotda(json.dumps(body).encode())
    (n,) = result.notices
    assert (n.kind, n.device_id, n.ts_ms, n.detail["status"]) == ("offline", IMEI, TS, "OFFLINE")
    body["notify_data"]["body"]["status"] = "ONLINE"
    assert iotda(json.dumps(body).encode()).notices[0].kind == "online"


def test_iotda_legacy_device_data_changed() -> None:
    body = {"notifyType": "deviceDataChanged", "requestId": None, "deviceId": "d-7f3a", "gatewayId": "d-7f3a",
            "service": {"serviceId": "Smoke", "serviceType": "Smoke", "data": {"Alarm_Status": 1, "Battery_Level": 80},
                        "eventTime": HW_TS}}
    (r,) = iotda(json.dumps(body).encode()).readings
    assert (r.device_id, r.event, r.ts_ms, r.metrics["battery_pct"]) == ("d-7f3a", Event.alarm, TS, 80)
    many = {"notifyType": "deviceDatasChanged", "deviceId": "d-7f3a",
            "services": [body["service"], {"serviceId": "Sig", "data": {"RSRP": 90}, "eventTime": HW_TS}]}
    (r2,) = iotda(json.dumps(many).encode()).readings
    assert r2.metrics["rsrp_dbm"] == -90 and r2.event == Event.alarm


@pytest.mark.parametrize("body", [
    b"not json",
    b"[]",
    b'{"resource": "device.property"}',
    b'{"notifyType": "deviceAdded", "deviceId": "x"}',
    json.dumps({"resource": "device.message", "event": "report",
                "notify_data": {"header": {"device_id": "x"}, "body": {"content": "hi"}}}).encode(),
    json.dumps({"resource": "device.property", "event": "report",
                "notify_data": {"header": {"device_id": "bad id!"}, "body": {"services": []}}}).encode(),
    json.dumps({"resource": "device.property", "event": "report",
                "notify_data": {"header": {}, "body": {"services": []}}}).encode(),
])
def test_iotda_what_is_not_decoded_says_why(body: bytes) -> None:
    with pytest.raises(DecodeError) as e:
        iotda(body)
    assert e.value.reason


def test_iotda_unknown_properties_are_a_per_item_error() -> None:
    result = iotda(notify([{"service_id": "S", "properties": {"nobody_knows": 1}}]))
    assert result.readings == [] and "no iotda device profile" in result.errors[0].reason


# --- Alibaba ----------------------------------------------------------------------------------
def wrapped(topic: str, content: Any, generate_time: Any = TS) -> bytes:
    text = content if isinstance(content, (str, bytes)) else json.dumps(content)
    return envelope(topic, "1234567890", generate_time, text.encode() if isinstance(text, str) else text)


def test_aliyun_property_post_items() -> None:
    body = {"iotId": "4z819VQHk6VSLmmBJfrf00107ee200", "productKey": "a1pk", "deviceName": IMEI, "gmtCreate": TS - 1,
            "items": {"Alarm_Status": {"value": 1, "time": TS}, "Battery_Level": {"value": 66, "time": TS}}}
    (r,) = aliyun(wrapped(f"/a1pk/{IMEI}/thing/event/property/post", body)).readings
    assert (r.device_id, r.kind, r.event, r.ts_ms, r.metrics["battery_pct"]) == (IMEI, Kind.smoke, Event.alarm, TS, 66)


def test_aliyun_alink_params_name_the_device_by_topic() -> None:
    body = {"id": "123", "version": "1.0", "params": {"Alarm_Status": 0, "RSRP": {"value": 101, "time": TS}},
            "method": "thing.event.property.post"}
    (r,) = aliyun(wrapped(f"/sys/a1pk/{IMEI}/thing/event/property/post", body, str(TS + 9))).readings
    assert (r.device_id, r.event, r.ts_ms, r.metrics["rsrp_dbm"]) == (IMEI, Event.report, TS, -101)
    body["params"] = {"Alarm_Status": 1}
    (r2,) = aliyun(wrapped(f"/a1pk/{IMEI}/thing/event/property/post", body, str(TS + 9))).readings
    assert r2.ts_ms == TS + 9  # no property time: the message's generateTime (text, as the header often is)


def test_aliyun_event_is_an_event_report() -> None:
    body = {"identifier": "SmokeAlarm", "name": "alarm", "type": "alert", "productKey": "a1pk", "deviceName": IMEI,
            "value": {"Alarm_Status": 0}, "time": TS}
    (r,) = aliyun(wrapped(f"/a1pk/{IMEI}/thing/event/SmokeAlarm/post", body)).readings
    assert r.event == Event.alarm_clear  # an event's 0 clears; a periodic report's 0 does not


def test_aliyun_status_is_a_notice() -> None:
    body = {"status": "online", "iotId": "x", "productKey": "a1pk", "deviceName": IMEI,
            "time": "2026-11-22 18:00:00.000", "utcTime": "2026-11-22T10:00:00.000Z", "clientIp": "10.0.0.1"}
    (n,) = aliyun(wrapped(f"/as/mqtt/status/a1pk/{IMEI}", body)).notices
    assert (n.kind, n.device_id, n.ts_ms, n.detail["productKey"]) == ("online", IMEI, TS, "a1pk")


def test_aliyun_bare_body_is_taken_too() -> None:
    body = {"productKey": "a1pk", "deviceName": IMEI, "items": {"Alarm_Status": {"value": 1, "time": TS}}}
    (r,) = aliyun(json.dumps(body).encode()).readings
    assert r.event == Event.alarm and r.ts_ms == TS


@pytest.mark.parametrize("body", [
    wrapped("/a1pk/dev/thing/model/up_raw", b"\x00\xff\x10"),  # transparent bytes
    wrapped("/a1pk/dev/thing/event/property/post", "{not json"),
    wrapped("/x", {"items": {"Alarm_Status": 1}}),  # no device
    wrapped("/a1pk/dev/thing/event/property/post", {"something": "else"}),
    wrapped("/as/mqtt/status/a1pk/dev", {"status": "sleeping"}),
    b"[1]",
])
def test_aliyun_what_is_not_decoded_says_why(body: bytes) -> None:
    with pytest.raises(DecodeError) as e:
        aliyun(body)
    assert e.value.reason


def test_envelope_keeps_binary_as_base64() -> None:
    env = json.loads(envelope("/t", "m", "1", b"\xff\x00"))
    assert env == {"topic": "/t", "messageId": "m", "generateTime": "1", "content_base64": "/wA="}


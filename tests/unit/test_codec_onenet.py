"""OneNET push: signatures over msg as sent (checked against hashlib here), data points through
every shipped profile, online/offline notices, errors."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from devices.kinds import Event, Kind
from ingest.codecs.errors import DecodeError
from ingest.codecs.onenet import decode_onenet, onenet_signature, verify_onenet, verify_onenet_url
from ingest.codecs.platform import PlatformNotice, PlatformResult
from ingest.codecs.profiles import ProfileRegistry

PROFILES = ProfileRegistry.load()
TOKEN = "miaoxiang-onenet-token"
NONCE = "aB3dE6gH"
IMEI = "868120301234567"
AT = 1_795_341_600_000


def md5_b64(text: str) -> str:
    return base64.b64encode(hashlib.md5(text.encode("utf-8")).digest()).decode()


def signed(msg_source: str, token: str = TOKEN, nonce: str = NONCE) -> bytes:
    """A push body whose msg is `msg_source` verbatim, signed independently of the codec."""
    sig = md5_b64(token + nonce + msg_source)
    return ('{"msg": ' + msg_source + ', "msg_signature": "' + sig + '", "nonce": "' + nonce + '"}').encode()


def point(ds_id: str, value: Any, at: int = AT, imei: str | None = IMEI, dev_id: int = 5012345) -> dict[str, Any]:
    p: dict[str, Any] = {"at": at, "type": 1, "dev_id": dev_id, "ds_id": ds_id, "value": value}
    if imei is not None:
        p["imei"] = imei
    return p


def decode(body: bytes, profile: str | None = None) -> PlatformResult:
    return decode_onenet(body, received_ms=AT + 900, profiles=PROFILES, profile=profile)


def test_signature_matches_hashlib() -> None:
    msg = '{"at":1795341600000,"type":1,"imei":"868120301234567","ds_id":"Alarm_Status","value":1}'
    assert onenet_signature(TOKEN, NONCE, msg) == md5_b64(TOKEN + NONCE + msg)
    assert onenet_signature("令牌", NONCE, msg) == md5_b64("令牌" + NONCE + msg)


def test_signature_covers_msg_exactly_as_sent() -> None:
    # spacing, key order and escapes a re-serialisation would change
    msg = (
        '{ "value" : 1.50, "ds_id":"Alarm_Status",\n "type":1, "at":1795341600000, "imei":"868120301234567",'
        ' "note":"\\u70df" }'
    )
    body = signed(msg)
    assert verify_onenet(TOKEN, body)
    assert not verify_onenet("other-token", body)
    assert not verify_onenet(TOKEN, body.replace(b"1.50", b"1.5"))
    assert not verify_onenet(TOKEN, signed(msg, nonce="n1").replace(b'"n1"', b'"n2"'))


def test_string_msg_is_signed_as_its_content() -> None:
    inner = json.dumps(point("Alarm_Status", 1))
    sig = md5_b64(TOKEN + NONCE + inner)
    body = json.dumps({"msg": inner, "nonce": NONCE, "msg_signature": sig}).encode()
    assert verify_onenet(TOKEN, body)
    [r] = decode(body).readings
    assert (r.kind, r.event) == (Kind.smoke, Event.alarm)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b'{"msg": {}, "nonce": "x"}',
        b'{"msg": {}, "msg_signature": "x"}',
        b'{"msg": {}, "msg": {}, "nonce": "n", "msg_signature": "s"}',
        b'{"msg": {}, "nonce": 5, "msg_signature": "s"}',
        b'{"enc_msg": "abc", "nonce": "n", "msg_signature": "s"}',
        b'{"msg": {} "nonce": "n"}',
        b'{"msg": {}, "nonce": "n", "msg_signature": "\xff"}',
    ],
)
def test_verify_is_false_never_an_exception(body: bytes) -> None:
    assert verify_onenet(TOKEN, body) is False


def test_url_verification() -> None:
    msg, nonce = "xyz123", "N0nce"
    sig = md5_b64(TOKEN + nonce + msg)
    assert verify_onenet_url(TOKEN, msg, nonce, sig)
    assert not verify_onenet_url(TOKEN, msg + "x", nonce, sig)
    plus = next(m for m in (f"m{i}" for i in range(1000)) if "+" in md5_b64(TOKEN + nonce + m))
    assert verify_onenet_url(TOKEN, plus, nonce, md5_b64(TOKEN + nonce + plus).replace("+", " "))


def test_smoke_data_points_of_one_moment_are_one_reading() -> None:
    msg = [
        point("Alarm_Status", 1),
        point("Battery_Level", 86),
        point("RSRP", 97),
        point("Cell_ID", "1a2b3c"),
        point("Battery_Level", 85, at=AT + 60_000),
    ]
    result = decode(signed(json.dumps(msg)))
    assert result.errors == [] and result.notices == []
    first, second = result.readings
    assert (first.device_id, first.kind, first.event, first.ts_ms, first.received_ms) == (
        IMEI,
        Kind.smoke,
        Event.alarm,
        AT,
        AT + 900,
    )
    assert first.metrics == {"battery_pct": 86.0, "rsrp_dbm": -97.0, "cell_id": "1A2B3C"}
    assert (second.event, second.ts_ms, second.metrics) == (Event.report, AT + 60_000, {"battery_pct": 85.0})


def test_gas_property_map_value() -> None:
    value = {
        "gas_sensor_state": 1, "gas_value": 12, "medium": 1, "valve_state": 1,
        "battery_value": 77, "rsrp": 101, "sinr": 4,
    }
    [r] = decode(signed(json.dumps(point("gas_report", value, imei=None)))).readings
    assert (r.device_id, r.kind, r.event) == ("5012345", Kind.gas, Event.alarm)
    assert r.metrics == {
        "gas_lel_pct": 12.0,
        "gas_type": "lpg",
        "valve": "open",
        "battery_pct": 77.0,
        "rsrp_dbm": -101.0,
        "sinr_db": 4.0,
    }
    assert r.extra == {"alarm_level": "low"}


def test_electrical_data_points() -> None:
    msg = [
        point(k, v)
        for k, v in {"alarm_type": 2, "temp_a": 78.5, "temp_b": 41, "residual_current": 20, "voltage_a": 231}.items()
    ]
    [r] = decode(signed(json.dumps(msg)), profile="ctwing-electrical-fire").readings
    assert (r.kind, r.event, r.extra) == (Kind.electrical, Event.alarm, {"alarm_code": "over_temperature"})
    assert r.metrics == {"cable_temp_c": [78.5, 41.0], "residual_current_ma": [20.0], "voltage_v": [231.0]}


def test_online_offline_and_bad_messages() -> None:
    msg = [
        {"at": AT, "type": 2, "dev_id": 5012345, "status": 1, "login_type": 7},
        {"at": AT + 5, "type": 2, "imei": IMEI, "dev_id": 5012345, "status": 0},
        {"at": AT, "type": 7, "dev_id": 1},
        "junk",
        {"at": AT, "type": 1, "dev_id": 5012345, "value": 3},
        {"at": AT, "type": 1, "ds_id": "Alarm_Status", "value": 1},
        {"at": AT, "type": 2, "dev_id": 5012345, "status": 3},
        point("mystery", 1),
    ]
    result = decode(signed(json.dumps(msg)))
    assert result.notices == [
        PlatformNotice("online", "5012345", AT, {"dev_id": 5012345, "login_type": 7}),
        PlatformNotice("offline", IMEI, AT + 5, {"dev_id": 5012345}),
    ]
    assert result.readings == []
    assert [e.index for e in result.errors] == [2, 3, 4, 5, 6, 7]
    reasons = [e.reason for e in result.errors]
    assert "type 7 is not decoded" in reasons[0]
    assert "not a JSON object" in reasons[1]
    assert "no ds_id" in reasons[2]
    assert "neither imei nor dev_id" in reasons[3]
    assert "status 3" in reasons[4]
    assert "no onenet device profile knows" in reasons[5]
    assert json.loads(result.errors[1].raw) == "junk"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"nonce": "n"}', "has no msg"),
        (b'{"enc_msg": "x"}', "encrypted pushes are not supported"),
        (b"[1]", "not a JSON object"),
        (b'{"msg": {"type": 1,}}', "not valid JSON"),
        (b'{"msg": "{not json"}', "not valid JSON"),
        (b'{"msg": {}, "x": 1} trailing', "text after its end"),
    ],
)
def test_not_a_onenet_push(body: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode(body)


def test_msg_that_is_not_an_object_is_one_bad_message() -> None:
    result = decode(b'{"msg": 5}')
    assert [(e.index, e.reason, e.raw) for e in result.errors] == [(0, "OneNET message is not a JSON object", b"5")]

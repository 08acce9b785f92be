"""HTTP push bodies as NB-IoT platforms send them (CONTRACT §3), built around the service's own codecs.

Pure functions: a reading and a source's secret in, (body, headers) out. Reports are encoded
only by `ingest.codecs` (`encode_json_report`, `encode_mx1`); this module adds the envelopes
and signatures. OneNET carries a vendor object model, so its data point is the reading run
backwards through a device profile (`vendor_properties`).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from devices.kinds import Event
from devices.reading import Reading
from ingest.codecs.generic import hmac_signature
from ingest.codecs.json_report import encode_json_report
from ingest.codecs.mx1 import encode_mx1
from ingest.codecs.onenet import onenet_signature
from ingest.codecs.profiles import MetricSpec, Profile
from ingest.codecs.values import METRIC_TYPES

Request = tuple[bytes, dict[str, str]]
CTWING_TOKEN_HEADER = "X-Miaoxiang-Token"
_JSON = {"Content-Type": "application/json"}


class Unencodable(ValueError):
    """The reading cannot be said in this platform's format (e.g. a `test` event in a profile without one)."""


def _digest(*parts: object, size: int = 8) -> bytes:
    return hashlib.blake2b(repr(parts).encode(), digest_size=size).digest()


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def generic_request(readings: Sequence[Reading], secret: str) -> Request:
    """A `generic` push: one JSON report (or an array for several) signed with HMAC-SHA256."""
    if not readings:
        raise ValueError("a push needs at least one reading")
    reports = [encode_json_report(r) for r in readings]
    body = reports[0] if len(reports) == 1 else b"[" + b",".join(reports) + b"]"
    return body, {**_JSON, "X-Miaoxiang-Signature": hmac_signature(secret, body)}


def ctwing_request(r: Reading, token: str, *, product_id: str = "15000001", tenant_id: str = "2000001") -> Request:
    """A CTWing `dataReport` of a transparent product: the MX1 frame in `payload.APPdata`."""
    try:
        frame = encode_mx1(r)
    except ValueError as e:
        raise Unencodable(f"CTWing transparent payload needs MX1: {e}") from None
    envelope = {
        "upPacketSN": -1,
        "upDataSN": -1,
        "topic": "v1/up/ad",
        "timestamp": r.ts_ms,
        "tenantId": tenant_id,
        "serviceId": "",
        "protocol": "lwm2m",
        "productId": product_id,
        "messageType": "dataReport",
        "deviceType": "",
        "deviceId": _digest("ctwing", r.device_id, size=16).hex(),
        "IMEI": r.device_id,
        "IMSI": "46011" + str(int.from_bytes(_digest("imsi", r.device_id), "big"))[-10:].zfill(10),
        "payload": {"APPdata": base64.b64encode(frame).decode("ascii")},
    }
    return _compact(envelope).encode("utf-8"), {**_JSON, CTWING_TOKEN_HEADER: token}


def onenet_request(r: Reading, token: str, profile: Profile) -> Request:
    """A OneNET type-1 data point whose `value` is `profile`'s object model of the reading, signed
    Base64(MD5(token + nonce + msg)) over `msg` exactly as it stands in the body."""
    msg = {
        "at": r.ts_ms,
        "type": 1,
        "imei": r.device_id,
        "dev_id": int.from_bytes(_digest("onenet", r.device_id), "big") % 1_000_000_000,
        "ds_id": "properties",
        "value": vendor_properties(profile, r),
    }
    msg_text = _compact(msg)
    nonce = _digest("nonce", r.device_id, r.ts_ms, int(r.event)).hex()[:8]
    signature = onenet_signature(token, nonce, msg_text)
    body = '{"msg":' + msg_text + ',"msg_signature":' + _compact(signature) + ',"nonce":' + _compact(nonce) + "}"
    return body.encode("utf-8"), dict(_JSON)


def vendor_properties(profile: Profile, r: Reading) -> dict[str, Any]:
    """The vendor property map that `profile` translates back into `r` (in a data report).

    Metrics the profile has no property for are left out. Heartbeats go as periodic reports
    (object models have no heartbeat). Unencodable if `r`'s kind or event has no place in it.
    """
    if profile.kind is not r.kind:
        raise Unencodable(f"profile {profile.name} is for {profile.kind.name} devices, the reading is {r.kind.name}")
    props: dict[str, Any] = {}
    for prop, spec in profile.properties.items():
        value = r.metrics.get(spec.metric)
        if value is None:
            continue
        if spec.index is not None:
            if not isinstance(value, list) or spec.index >= len(value):
                continue
            value = value[spec.index]
        props[prop] = _invert(spec, value, profile.name)
    event = Event.report if r.event is Event.heartbeat else r.event
    code = _event_code(profile, event, r.metrics.get("fault_code"))
    if code is not None:
        props[code[0]] = code[1]
    elif event is not profile.default_event:
        raise Unencodable(f"profile {profile.name} has no data-report code for event {r.event.name}")
    return props


def _event_code(profile: Profile, event: Event, fault_code: Any) -> tuple[str, Any] | None:
    for rule in profile.events:
        if "data" not in rule.messages:
            continue
        for code, outcome in rule.map.items():
            if outcome.event is event and outcome.fault_code in (None, fault_code):
                return rule.property, int(code) if code.isdigit() else code
    return None


def _invert(spec: MetricSpec, value: Any, profile: str) -> Any:
    if spec.map is not None:
        for code, mapped in spec.map.items():
            if mapped == value and type(mapped) is type(value):
                return int(code) if code.isdigit() else code
        raise Unencodable(f"profile {profile} has no code for {spec.metric}={value!r}")
    kind = METRIC_TYPES[spec.metric]
    if kind is bool:
        return 1 if value else 0
    if kind is str:
        return value
    if isinstance(value, list):
        return [_number(spec, v) for v in value]
    return _number(spec, value)


def _number(spec: MetricSpec, value: float) -> float | int:
    x = abs(value) if spec.negate else value
    out = round((x - spec.offset) / spec.scale, 6)
    return int(out) if float(out).is_integer() and isinstance(value, int) else out


def iotda_message(r: Reading, profile: Profile, *, product_id: str = "mx-product") -> bytes:
    """A Huawei IoTDA `device.property` report (`notify_data`), as its AMQP subscription delivers
    it: `profile`'s object model of the reading in one service. IoTDA times are whole seconds
    (`yyyyMMddTHHmmssZ`), so the reading's time is too."""
    when = datetime.fromtimestamp(r.ts_ms // 1000, UTC).strftime("%Y%m%dT%H%M%SZ")
    header = {"app_id": "mx-app", "device_id": f"{product_id}_{r.device_id}", "node_id": r.device_id,
              "product_id": product_id, "gateway_id": f"{product_id}_{r.device_id}"}
    services = [{"service_id": profile.kind.name, "properties": vendor_properties(profile, r), "event_time": when}]
    envelope = {"resource": "device.property", "event": "report", "event_time": when,
                "notify_data": {"header": header, "body": {"services": services}}}
    return _compact(envelope).encode("utf-8")


def aliyun_message(r: Reading, profile: Profile, *, product_key: str = "a1mxProduct") -> tuple[bytes, dict[str, Any]]:
    """An Alibaba Cloud IoT thing model property report as its AMQP subscription delivers it:
    (body, application properties `topic`, `messageId`, `generateTime`)."""
    items = {k: {"value": v, "time": r.ts_ms} for k, v in vendor_properties(profile, r).items()}
    body = {"iotId": _digest("aliyun", r.device_id, size=16).hex(), "requestId": str(r.ts_ms),
            "productKey": product_key, "deviceName": r.device_id, "gmtCreate": r.ts_ms,
            "deviceType": profile.kind.name, "items": items}
    props = {"topic": f"/{product_key}/{r.device_id}/thing/event/property/post",
             "messageId": str(int.from_bytes(_digest("msg", r.device_id, r.ts_ms), "big") >> 1),
             "generateTime": r.ts_ms}
    return _compact(body).encode("utf-8"), props

"""Alibaba Cloud IoT Platform messages (CONTRACT §3), as its AMQP server-side subscription delivers them.

An AMQP message's body is the device message and its application properties say what it is
(`topic`, `messageId`, `generateTime`). The AMQP consumer hands both over as one JSON object,
`{"topic", "messageId", "generateTime", "content"}` (`content`: the body as text; see
`envelope`), which is also what a dead letter keeps. A bare body (no `content`) is taken too.

Bodies, decoded through device profiles (`platform.aliyun`, product ids = productKeys):

- the thing model's property report (`/{pk}/{dn}/thing/event/property/post`):
  `{"iotId", "productKey", "deviceName", "gmtCreate", "items": {"Prop": {"value", "time"}}}`;
- the raw Alink request `{"id", "version", "params": {...}, "method"}` whose `params` hold
  `{"Prop": {"value", "time"}}` or `{"Prop": value}`, the device named by the topic;
- a thing model event (`/{pk}/{dn}/thing/event/{identifier}/post`): `{"identifier", "value":
  {...}, "time", "productKey", "deviceName"}`, decoded as a platform event report (an event with
  no output properties becomes the property `{identifier: 1}`);
- a status change (`/as/mqtt/status/{pk}/{dn}`): `{"status": "online"|"offline", ...}`, a notice.

The device is the `deviceName` (Alibaba's unique name within the product, usually its IMEI).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from .errors import DecodeError
from .platform import NoticeKind, PlatformNotice, PlatformResult, profile_reading
from .profiles import Context, ProfileRegistry
from .values import check_device_id, check_tree, finite_float, load_json, parse_ts, show

#: Deepest nesting accepted in a message.
MAX_DEPTH = 32
_PROPERTY_POST = "thing.event.property.post"


def envelope(topic: str | None, message_id: str | None, generate_time: Any, body: bytes) -> bytes:
    """The bytes the AMQP consumer hands over for one Alibaba message: its headers and its body,
    as text (`content`) when it is UTF-8, else base64 (`content_base64`)."""
    env: dict[str, Any] = {"topic": topic, "messageId": message_id, "generateTime": generate_time}
    try:
        env["content"] = body.decode("utf-8")
    except UnicodeDecodeError:
        env["content_base64"] = base64.b64encode(body).decode("ascii")
    return json.dumps(env, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")


def decode_aliyun(body: bytes, *, received_ms: int, profiles: ProfileRegistry, profile: str | None) -> PlatformResult:
    """One Alibaba message (wrapped by `envelope`, or a bare body)."""
    outer = load_json(body, "the Alibaba IoT message")
    if not isinstance(outer, dict):
        raise DecodeError("not an Alibaba IoT message: expected a JSON object")
    topic = outer.get("topic") if isinstance(outer.get("topic"), str) else None
    generated = outer.get("generateTime")
    if "content_base64" in outer:
        raise DecodeError(
            f"Alibaba message on topic {show(topic)} is binary (transparent data): it needs its own decoder"
        )
    inner = load_json(outer["content"], "the Alibaba message content") if "content" in outer else outer
    msg = check_tree(inner, MAX_DEPTH, "the Alibaba message")
    if not isinstance(msg, dict):
        raise DecodeError(f"Alibaba message on topic {show(topic)} is not a JSON object")
    default_ts = _ms(generated, received_ms) if generated is not None else received_ms
    product, device_id = _device(msg, topic)
    if (topic is not None and topic.startswith("/as/mqtt/status/")) or msg.get("status") in ("online", "offline"):
        return _status(msg, device_id, product, default_ts, received_ms)
    if isinstance(msg.get("items"), dict):
        props, ts_ms = _timed(msg["items"], _ms(msg.get("gmtCreate"), default_ts), received_ms)
        return _reading(props, "data", device_id, product, ts_ms, received_ms, profiles, profile)
    if isinstance(msg.get("params"), dict):
        props, ts_ms = _timed(msg["params"], default_ts, received_ms)
        method = msg.get("method", _PROPERTY_POST)
        context: Context = "data" if method == _PROPERTY_POST else "event"
        return _reading(props, context, device_id, product, ts_ms, received_ms, profiles, profile)
    if isinstance(msg.get("identifier"), str):
        value = msg.get("value")
        props = value if isinstance(value, dict) and value else {msg["identifier"]: 1}
        ts_ms = _ms(msg.get("time"), default_ts)
        return _reading(props, "event", device_id, product, ts_ms, received_ms, profiles, profile)
    raise DecodeError(f"Alibaba message on topic {show(topic)} has no items, params, event or status Miaoxiang decodes")


def _device(msg: dict[str, Any], topic: str | None) -> tuple[str | None, str]:
    """(productKey, deviceName) from the body, else from the topic's `/{pk}/{dn}/...` or
    `/sys/{pk}/{dn}/...` or `/as/mqtt/status/{pk}/{dn}`."""
    product, name = msg.get("productKey"), msg.get("deviceName")
    if not (isinstance(name, str) and name) and topic is not None:
        levels = topic.split("/")[1:]
        for prefix in (["as", "mqtt", "status"], ["sys"], []):
            if levels[: len(prefix)] == prefix and len(levels) >= len(prefix) + 2:
                product, name = levels[len(prefix)], levels[len(prefix) + 1]
                break
    if not isinstance(name, str) or not name:
        raise DecodeError(f"Alibaba message names no device: no deviceName and topic {show(topic)}")
    return (product if isinstance(product, str) and product else None), check_device_id(name)


def _timed(values: dict[str, Any], default_ts: int, received_ms: int) -> tuple[dict[str, Any], int]:
    """Properties from `{"P": {"value", "time"}}` or `{"P": value}`; the reading's time is the
    latest property time, else `default_ts`."""
    props: dict[str, Any] = {}
    times: list[int] = []
    for name, item in values.items():
        if isinstance(item, dict) and "value" in item:
            props[name] = item["value"]
            if item.get("time") is not None:
                times.append(_ms(item["time"], received_ms))
        else:
            props[name] = item
    if not props:
        raise DecodeError("Alibaba message has no properties")
    return props, max(times) if times else default_ts


def _ms(value: Any, received_ms: int) -> int:
    """Epoch ms of a number, numeric text (Alibaba's headers are often text) or RFC 3339 text."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    elif isinstance(value, float) and finite_float(value) is not None and value.is_integer():
        value = int(value)
    return parse_ts(value, received_ms)


def _reading(
    props: dict[str, Any],
    context: Context,
    device_id: str,
    product: str | None,
    ts_ms: int,
    received_ms: int,
    profiles: ProfileRegistry,
    profile: str | None,
) -> PlatformResult:
    chosen = profiles.select("aliyun", name=profile, product_id=product, props=props)
    reading = profile_reading(chosen, props, device_id=device_id, ts_ms=ts_ms, received_ms=received_ms, context=context)
    return PlatformResult([reading])


def _status(
    msg: dict[str, Any], device_id: str, product: str | None, default_ts: int, received_ms: int
) -> PlatformResult:
    status = msg.get("status")
    if status not in ("online", "offline"):
        raise DecodeError(f"Alibaba status message has status {show(status)}, expected online or offline")
    when = msg.get("utcTime") if msg.get("utcTime") is not None else msg.get("lastTime")
    try:
        ts_ms = _ms(when, received_ms) if isinstance(when, (int, str)) and "T" in str(when) else default_ts
    except DecodeError:
        ts_ms = default_ts
    detail = {k: msg[k] for k in ("iotId", "clientIp") if isinstance(msg.get(k), str)}
    if product is not None:
        detail["productKey"] = product
    kind: NoticeKind = "online" if status == "online" else "offline"
    return PlatformResult(notices=[PlatformNotice(kind, device_id, ts_ms, detail)])

"""OneNET (China Mobile) HTTP push (CONTRACT §3).

The body is `{"msg": ..., "msg_signature": "...", "nonce": "..."}` and the signature is
Base64(MD5(token + nonce + msg)) over `msg` exactly as it appears in the body, so the member's
source text is cut out of the body rather than re-serialised (a JSON-string `msg` is signed as
the string's content). `msg` is one message or an array: type 1 data points (`ds_id` = vendor
property, `value` its value or an object of properties) and type 2 online/offline (`status`).
Data points of one device at one `at` become one reading through the device profile.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from .errors import BatchItemError, DecodeError
from .json_report import MAX_BATCH
from .jsontext import Element, object_members
from .platform import PlatformNotice, PlatformResult, profile_reading, reserialise
from .profiles import ProfileRegistry, lookup
from .values import check_device_id, check_tree, load_json, parse_ts, show

#: Deepest nesting accepted in a push body.
MAX_DEPTH = 32


def onenet_signature(token: str, nonce: str, msg_as_sent: str) -> str:
    """Base64(MD5(token + nonce + msg)) over the UTF-8 bytes."""
    digest = hashlib.md5((token + nonce + msg_as_sent).encode("utf-8", "surrogatepass")).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_onenet(token: str, body: bytes) -> bool:
    """Whether the body's `msg_signature` signs its `msg` and `nonce` with `token`."""
    try:
        msg, nonce, signature = signed_parts(body)
    except DecodeError:
        return False
    if nonce is None or signature is None:
        return False
    return _same(onenet_signature(token, nonce, msg), signature)


def verify_onenet_push(token: str, body: bytes, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
    """A OneNET push is signed in its body (`verify_onenet`)."""
    return verify_onenet(token, body)


def verify_onenet_url(token: str, msg: str, nonce: str, signature: str) -> bool:
    """OneNET's URL check (`GET ?msg=&nonce=&signature=`). A '+' of the base64 signature that
    arrived unescaped in the query decodes as a space and is restored."""
    return _same(onenet_signature(token, nonce, msg), signature.replace(" ", "+"))


def signed_parts(body: bytes) -> tuple[str, str | None, str | None]:
    """(msg as sent, nonce, msg_signature) of a push body; DecodeError if it has no single `msg`."""
    members = _members(body)
    msg = members["msg"]
    return (
        msg.value if isinstance(msg.value, str) else msg.source,
        _optional_string(members.get("nonce")),
        _optional_string(members.get("msg_signature")),
    )


def _members(body: bytes) -> dict[str, Element]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DecodeError(f"the OneNET push is not UTF-8 text (bad byte at offset {e.start})") from None
    members: dict[str, Element] = {}
    for key, element in object_members(text, "the OneNET push"):
        if key in members:
            raise DecodeError(f"the OneNET push has member {show(key)} twice")
        members[key] = element
    if "msg" not in members:
        hint = " (encrypted pushes are not supported: turn encryption off)" if "enc_msg" in members else ""
        raise DecodeError(f"not a OneNET push: the body has no msg{hint}")
    return members


def _optional_string(element: Element | None) -> str | None:
    return element.value if element is not None and isinstance(element.value, str) else None


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))


def decode_onenet(body: bytes, *, received_ms: int, profiles: ProfileRegistry, profile: str | None) -> PlatformResult:
    """Readings and online/offline notices of one OneNET push (the signature is checked apart)."""
    msg = _members(body)["msg"].value
    if isinstance(msg, str):
        msg = load_json(msg, "the OneNET msg")
    msg = check_tree(msg, MAX_DEPTH, "the OneNET msg")
    items = msg if isinstance(msg, list) else [msg]
    if len(items) > MAX_BATCH:
        raise DecodeError(f"the OneNET msg holds {len(items)} messages, more than {MAX_BATCH}")
    result = PlatformResult()
    groups: dict[tuple[str, int], list[tuple[int, dict[str, Any]]]] = {}
    for index, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise DecodeError("OneNET message is not a JSON object")
            device_id = _device_id(item)
            ts_ms = parse_ts(item.get("at"), received_ms)
            kind = item.get("type")
            if kind == 1 and not isinstance(kind, bool):
                props = _data_point(item)
                groups.setdefault((device_id, ts_ms), []).append((index, props))
            elif kind == 2 and not isinstance(kind, bool):
                result.notices.append(_status(item, device_id, ts_ms))
            else:
                raise DecodeError(f"OneNET message type {show(kind)} is not decoded (1 data point, 2 online/offline)")
        except DecodeError as e:
            result.errors.append(BatchItemError(index, e.reason, reserialise(item)))
    for (device_id, ts_ms), points in groups.items():
        merged: dict[str, Any] = {}
        for _, props in points:
            merged.update(props)
        try:
            chosen = profiles.select("onenet", name=profile, product_id=None, props=merged)
            result.readings.append(
                profile_reading(
                    chosen, merged, device_id=device_id, ts_ms=ts_ms, received_ms=received_ms, context="data"
                )
            )
        except DecodeError as e:
            first = points[0][0]
            raw = reserialise([items[i] for i, _ in points]) if len(points) > 1 else reserialise(items[first])
            result.errors.append(BatchItemError(first, e.reason, raw))
    return result


def _device_id(item: dict[str, Any]) -> str:
    """The IMEI when the message has one, else OneNET's dev_id."""
    for key in ("imei", "dev_id"):
        value = item.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and value:
            return check_device_id(value)
    raise DecodeError("OneNET message names no device: it has neither imei nor dev_id")


def _data_point(item: dict[str, Any]) -> dict[str, Any]:
    """The properties of one data point: {ds_id: value}, or `value` itself when it is an object."""
    value = item.get("value")
    if isinstance(value, dict):
        if not value:
            raise DecodeError("OneNET data point value is an empty object")
        return value
    ds_id = item.get("ds_id")
    if not isinstance(ds_id, str) or not ds_id:
        raise DecodeError("OneNET data point has no ds_id")
    if value is None:
        raise DecodeError(f"OneNET data point {show(ds_id)} has no value")
    return {ds_id: value}


def _status(item: dict[str, Any], device_id: str, ts_ms: int) -> PlatformNotice:
    status = item.get("status")
    found, online = lookup({"1": True, "0": False}, status)
    if not found or isinstance(status, bool):
        raise DecodeError(f"OneNET online/offline message has status {show(status)}, expected 1 or 0")
    detail = {k: item[k] for k in ("dev_id", "login_type") if isinstance(item.get(k), (str, int))}
    return PlatformNotice("online" if online else "offline", device_id, ts_ms, detail)

"""CTWing (China Telecom AEP) subscription push envelopes (CONTRACT §3).

`dataReport`, `dataReportTupUnion` and `eventReport` carry an object-model property map
(`payload.serviceData`, or the payload itself), translated by a device profile, or for
transparent products base64 bytes in `payload.APPdata` (an MX1 frame, or a vendor frame that is
reported as an error). `deviceOnlineOfflineReport` and `commandResponse` become notices; a
command's `result.resultCode` says its state (SUCCESSFUL acked, FAILED failed, any other code,
SENT or DELIVERED, still sent). The push is authenticated by the source's token.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Mapping
from typing import Any

from devices.reading import Reading

from .errors import BatchItemError, DecodeError
from .mx1 import MAGIC, decode_mx1
from .platform import CommandState, PlatformNotice, PlatformResult, profile_reading, reserialise
from .profiles import Context, ProfileRegistry, lookup
from .values import check_device_id, check_tree, load_json, parse_ts, show

#: Deepest nesting accepted in a push body.
MAX_DEPTH = 32
_READING_TYPES: dict[str, Context] = {"dataReport": "data", "dataReportTupUnion": "data", "eventReport": "event"}
_ENVELOPE_ONLY = frozenset({"serviceId", "serviceType"})
#: `commandResponse` result codes that end a command; the others (SENT, DELIVERED) leave it sent.
_COMMAND_STATES: dict[str, CommandState] = {"SUCCESSFUL": "acked", "FAILED": "failed"}
_IMEI = re.compile(r"[0-9]{15}")


def verify_ctwing(secret: str, body: bytes, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
    """CTWing signs nothing: the push URL carries the source's token, as the `X-Miaoxiang-Token`
    header or the `token` query parameter."""
    token = headers.get("x-miaoxiang-token") or query.get("token")
    return token is not None and hmac.compare_digest(token.encode(), secret.encode())


def decode_ctwing(body: bytes, *, received_ms: int, profiles: ProfileRegistry, profile: str | None) -> PlatformResult:
    """One CTWing push. `profile` is the push source's configured profile name; without one the
    profile listing the envelope's productId, else the best property-name match, is used."""
    env = check_tree(load_json(body, "the CTWing push"), MAX_DEPTH, "the CTWing push")
    if not isinstance(env, dict) or not isinstance(env.get("messageType"), str):
        raise DecodeError("not a CTWing push: expected a JSON object with a string messageType")
    message_type = env["messageType"]
    device_id = _device_id(env)
    ts_ms = parse_ts(env.get("timestamp"), received_ms)
    context = _READING_TYPES.get(message_type)
    if context is not None:
        return _readings(env, context, device_id, ts_ms, received_ms, profiles, profile)
    if message_type == "deviceOnlineOfflineReport":
        found, online = lookup({"1": True, "0": False}, env.get("eventType"))
        if not found or isinstance(env.get("eventType"), bool):
            raise DecodeError(
                f"CTWing deviceOnlineOfflineReport has eventType {show(env.get('eventType'))}, expected 1 or 0"
            )
        notice = PlatformNotice("online" if online else "offline", device_id, ts_ms, _platform_ids(env))
        return PlatformResult(notices=[notice])
    if message_type == "commandResponse":
        return PlatformResult(notices=[PlatformNotice("command_response", device_id, ts_ms, _command_detail(env))])
    raise DecodeError(f"CTWing messageType {show(message_type)} is not one Miaoxiang decodes")


def _device_id(env: dict[str, Any]) -> str:
    """The IMEI when the envelope has one, else the IMEI inside the platform's deviceId (an NB-IoT
    device's deviceId is its productId followed by its IMEI), else the deviceId itself."""
    for key in ("IMEI", "deviceId"):
        value = env.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and value:
            if key == "deviceId":
                value = _imei_in(value, env.get("productId"))
            return check_device_id(value)
    raise DecodeError("CTWing push names no device: it has neither IMEI nor deviceId")


def _imei_in(device_id: str, product_id: Any) -> str:
    product = str(product_id) if isinstance(product_id, (str, int)) and not isinstance(product_id, bool) else ""
    rest = device_id[len(product):]
    return rest if product and device_id.startswith(product) and _IMEI.fullmatch(rest) else device_id


def _platform_ids(env: dict[str, Any]) -> dict[str, Any]:
    return {k: env[k] for k in ("productId", "deviceId", "tenantId") if isinstance(env.get(k), (str, int))}


def _command_detail(env: dict[str, Any]) -> dict[str, Any]:
    result = env.get("result")
    code = result.get("resultCode") if isinstance(result, dict) else None
    if not isinstance(code, str):
        raise DecodeError("CTWing commandResponse has no result.resultCode")
    detail: dict[str, Any] = {"result_code": code, "state": _COMMAND_STATES.get(code, "sent"), **_platform_ids(env)}
    if isinstance(env.get("taskId"), (str, int)):
        detail["task_id"] = env["taskId"]
    result_detail = result.get("resultDetail") if isinstance(result, dict) else None
    if result_detail is not None:
        detail["result_detail"] = result_detail
        if isinstance(result_detail, dict) and isinstance(result_detail.get("cmd_id"), str):
            detail["cmd_id"] = result_detail["cmd_id"]
    return detail


def _readings(
    env: dict[str, Any],
    context: Context,
    device_id: str,
    ts_ms: int,
    received_ms: int,
    profiles: ProfileRegistry,
    profile: str | None,
) -> PlatformResult:
    payload = env.get("payload")
    items = payload if isinstance(payload, list) else [payload]
    if payload is None or not items:
        raise DecodeError(f"CTWing {env['messageType']} has no payload")
    result = PlatformResult()
    product_id = env.get("productId")
    product = str(product_id) if isinstance(product_id, (str, int)) and not isinstance(product_id, bool) else None
    for index, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise DecodeError("CTWing payload is not a JSON object")
            if "APPdata" in item:
                result.readings.append(_transparent(_app_bytes(item["APPdata"]), env, device_id, ts_ms, received_ms))
                continue
            props = _properties(item)
            chosen = profiles.select("ctwing", name=profile, product_id=product, props=props)
            result.readings.append(
                profile_reading(
                    chosen, props, device_id=device_id, ts_ms=ts_ms, received_ms=received_ms, context=context
                )
            )
        except DecodeError as e:
            result.errors.append(BatchItemError(index, e.reason, _raw(item)))
    return result


def _properties(item: dict[str, Any]) -> dict[str, Any]:
    if "serviceData" in item:
        props = item["serviceData"]
        if not isinstance(props, dict):
            raise DecodeError("CTWing payload.serviceData is not a JSON object")
    else:
        props = {k: v for k, v in item.items() if k not in _ENVELOPE_ONLY}
    if not props:
        raise DecodeError("CTWing payload has no properties")
    return props


def _app_bytes(value: Any) -> bytes:
    if not isinstance(value, str):
        raise DecodeError("CTWing payload.APPdata is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError("CTWing payload.APPdata is not valid base64") from None


def _transparent(frame: bytes, env: dict[str, Any], device_id: str, ts_ms: int, received_ms: int) -> Reading:
    """An MX1 frame carried by a transparent product; any other frame is an error."""
    if frame[:1] != bytes((MAGIC,)):
        first = f"0x{frame[0]:02x}" if frame else "nothing"
        raise DecodeError(
            f"APPdata holds a {len(frame)}-byte vendor frame starting with {first}, not MX1; it needs its own decoder"
        )
    r = decode_mx1(frame, received_ms=received_ms)
    imei = env.get("IMEI")
    if isinstance(imei, str) and imei and imei != r.device_id:
        raise DecodeError(f"the MX1 frame says device {r.device_id} but the CTWing envelope says IMEI {show(imei)}")
    if frame[12:16] == bytes(4):  # the frame has no time of its own: the platform's is closer than ours
        r.ts_ms = ts_ms
        r.untimed = env.get("timestamp") is None
    return r


def _raw(item: Any) -> bytes:
    """Dead-letter bytes of one payload: the vendor frame itself when APPdata decodes, else JSON."""
    if isinstance(item, dict) and isinstance(item.get("APPdata"), str):
        try:
            return base64.b64decode(item["APPdata"], validate=True)
        except (binascii.Error, ValueError):
            pass
    return reserialise(item)

"""Huawei Cloud IoTDA messages (CONTRACT §3), as its AMQP server-side subscription delivers them.

Two envelopes, both decoded through device profiles like CTWing's:

- IoTDA v5 data forwarding: `{"resource", "event", "event_time", "notify_data": {"header":
  {"device_id", "product_id", "app_id", "gateway_id", "node_id"}, "body": {...}}}`.
  `device.property`/`report` carries `body.services: [{"service_id", "properties",
  "event_time"}]`: the services of one event time become one reading (their properties merged).
  `device.status`/`update` carries `body.status` (ONLINE, OFFLINE, ...): a notice.
- The legacy OceanConnect push: `{"notifyType": "deviceDataChanged", "deviceId", "gatewayId",
  "service": {"serviceId", "serviceType", "data", "eventTime"}}`, and `deviceDatasChanged` with
  a `services` array.

Times are Huawei's `yyyyMMdd'T'HHmmss'Z'` (UTC) or RFC 3339. The device is the header's
`node_id` (the identifier it registered with, usually its IMEI), else its `device_id`; the
profile is the source's, else the one listing the `product_id` under `platform.iotda`, else the
best property-name match.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .errors import BatchItemError, DecodeError
from .platform import NoticeKind, PlatformNotice, PlatformResult, profile_reading, reserialise
from .profiles import ProfileRegistry
from .values import check_device_id, check_tree, check_ts_ms, load_json, parse_ts, show

#: Deepest nesting accepted in a message.
MAX_DEPTH = 32
#: `device.status` values that mean the device is connected; every other one is offline.
_ONLINE = frozenset({"ONLINE"})
_HEADER_IDS = ("device_id", "product_id", "gateway_id", "app_id")
_LEGACY = frozenset({"deviceDataChanged", "deviceDatasChanged"})


def decode_iotda(body: bytes, *, received_ms: int, profiles: ProfileRegistry, profile: str | None) -> PlatformResult:
    """One IoTDA message; DecodeError when it is neither envelope or names no device."""
    env = check_tree(load_json(body, "the IoTDA message"), MAX_DEPTH, "the IoTDA message")
    if not isinstance(env, dict):
        raise DecodeError("not an IoTDA message: expected a JSON object")
    if isinstance(env.get("notify_data"), dict):
        return _notify_data(env, received_ms, profiles, profile)
    if env.get("notifyType") in _LEGACY:
        return _legacy(env, received_ms, profiles, profile)
    if isinstance(env.get("notifyType"), str):
        raise DecodeError(f"IoTDA notifyType {show(env['notifyType'])} is not one Miaoxiang decodes")
    raise DecodeError("not an IoTDA message: it has neither notify_data nor a notifyType")


def huawei_time(value: Any, received_ms: int) -> int:
    """Epoch ms of `20151212T121212Z` (Huawei's compact UTC form), RFC 3339 text or epoch ms."""
    if isinstance(value, str) and len(value) == 16 and value[8:9] == "T" and value.endswith("Z"):
        try:
            moment = datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            raise DecodeError(f"time {show(value)} is not yyyyMMddTHHmmssZ") from None
        return check_ts_ms(int(moment.timestamp()) * 1000)
    return parse_ts(value, received_ms)


def _notify_data(
    env: dict[str, Any], received_ms: int, profiles: ProfileRegistry, profile: str | None
) -> PlatformResult:
    resource, event = env.get("resource"), env.get("event")
    data = env["notify_data"]
    header = data.get("header")
    if not isinstance(header, dict):
        raise DecodeError("IoTDA notify_data has no header object")
    device_id = _device(header, ("node_id", "device_id"))
    body = data.get("body")
    if not isinstance(body, dict):
        raise DecodeError("IoTDA notify_data has no body object")
    ts_ms = huawei_time(env.get("event_time"), received_ms)
    if resource == "device.property" and event == "report":
        services = body.get("services")
        if not isinstance(services, list) or not services:
            raise DecodeError("IoTDA property report has no services")
        product = _text(header.get("product_id"))
        return _services(services, ("service_id", "properties", "event_time"), device_id, ts_ms, product,
                         received_ms, profiles, profile)
    if resource == "device.status" and event == "update":
        status = body.get("status")
        if not isinstance(status, str) or not status:
            raise DecodeError("IoTDA status update has no status")
        ids = {k: header[k] for k in _HEADER_IDS if isinstance(header.get(k), str)}
        kind: NoticeKind = "online" if status in _ONLINE else "offline"
        notice = PlatformNotice(kind, device_id, ts_ms, {"status": status, **ids})
        return PlatformResult(notices=[notice])
    raise DecodeError(f"IoTDA resource {show(resource)} event {show(event)} is not one Miaoxiang decodes")


def _legacy(env: dict[str, Any], received_ms: int, profiles: ProfileRegistry, profile: str | None) -> PlatformResult:
    device_id = _device(env, ("deviceId",))
    services = [env.get("service")] if env["notifyType"] == "deviceDataChanged" else env.get("services")
    if not isinstance(services, list) or not services or services == [None]:
        raise DecodeError(f"IoTDA {env['notifyType']} has no service data")
    return _services(services, ("serviceId", "data", "eventTime"), device_id, received_ms, None,
                     received_ms, profiles, profile)


def _services(
    services: list[Any],
    keys: tuple[str, str, str],
    device_id: str,
    default_ts: int,
    product: str | None,
    received_ms: int,
    profiles: ProfileRegistry,
    profile: str | None,
) -> PlatformResult:
    """One reading per event time: the properties of the services reported at that time, merged
    (a later service's property of the same name wins). A bad service is an error of its own."""
    id_key, props_key, time_key = keys
    result = PlatformResult()
    groups: dict[int, dict[str, Any]] = {}
    first_index: dict[int, int] = {}
    for index, service in enumerate(services):
        try:
            if not isinstance(service, dict):
                raise DecodeError("IoTDA service is not a JSON object")
            props = service.get(props_key)
            if not isinstance(props, dict) or not props:
                raise DecodeError(f"IoTDA service {show(service.get(id_key))} has no {props_key}")
            ts_ms = huawei_time(service[time_key], received_ms) if service.get(time_key) is not None else default_ts
        except DecodeError as e:
            result.errors.append(BatchItemError(index, e.reason, reserialise(service)))
            continue
        groups.setdefault(ts_ms, {}).update(props)
        first_index.setdefault(ts_ms, index)
    for ts_ms, props in groups.items():
        try:
            chosen = profiles.select("iotda", name=profile, product_id=product, props=props)
            result.readings.append(
                profile_reading(
                    chosen, props, device_id=device_id, ts_ms=ts_ms, received_ms=received_ms, context="data"
                )
            )
        except DecodeError as e:
            result.errors.append(BatchItemError(first_index[ts_ms], e.reason, reserialise(props)))
    return result


def _device(obj: dict[str, Any], keys: tuple[str, ...]) -> str:
    for key in keys:
        value = _text(obj.get(key))
        if value:
            return check_device_id(value)
    raise DecodeError(f"IoTDA message names no device: it has no {' or '.join(keys)}")


def _text(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) and value else None

"""Checks every decoder shares: metric values, device ids, times, and bounded JSON parsing."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from devices.catalogue import METRICS
from devices.kinds import DEVICE_ID_RE, EVENT_BY_NAME, KIND_BY_NAME, Event, Kind

from .errors import DecodeError

#: Deepest nesting kept in a reading's `extra` (an object holding a list is depth 2).
MAX_EXTRA_DEPTH = 16
#: Latest accepted time: 9999-12-31T23:59:59.999Z.
MAX_TS_MS = 253_402_300_799_999
#: Largest accepted `seq` + 1: what `readings.seq` (PostgreSQL integer) holds. A larger one used to
#: be accepted and then failed every write of its batch, stalling ingest behind it.
SEQ_LIMIT = 2**31

#: Metric name -> python type of its value (the catalogue's).
METRIC_TYPES: dict[str, type] = {name: spec.type for name, spec in METRICS.items()}
#: Largest magnitude of a numeric metric: the fleet's live state (and its checkpoint, the `real`
#: columns of `device_state`) keeps metrics as float32, where anything larger becomes infinity,
#: which no JSON column stores. So a metric beyond it is refused here, where the sender is told.
METRIC_LIMIT = 3.4028234663852886e38
#: Range of a number without an entry in RANGES.
DEFAULT_RANGE = (-METRIC_LIMIT, METRIC_LIMIT)
#: Most ports of one charger (CONTRACT §10: `port` counts from 1).
MAX_PORTS = 64
#: Metric name -> inclusive range of its values, or of each value of a list metric (DEFAULT_RANGE
#: for numbers without an entry).
RANGES: dict[str, tuple[float, float]] = {
    "battery_pct": (0, 100),
    "battery_mv": (0, METRIC_LIMIT),
    "ecl": (0, 2),
    "pci": (0, 2**31 - 1),
    "arc_faults": (0, 2**31 - 1),
    "pyrolysis_index": (0, 100),
    "co_ppm": (0, 10_000),
    "flow_m3h": (0, METRIC_LIMIT),
    "tilt_deg": (0, 180),
    "port": (1, MAX_PORTS),
    "ports_active": (0, MAX_PORTS),
    "port_current_a": (0, METRIC_LIMIT),
    "port_power_w": (0, METRIC_LIMIT),
}
#: Enumerated metric -> its allowed strings (the catalogue's).
_ENUMS: dict[str, tuple[str, ...]] = {name: spec.values for name, spec in METRICS.items() if spec.values}
#: List metric -> most values (channels, phases, ports).
_LIST_CAPS: dict[str, int] = {
    "cable_temp_c": 4, "voltage_v": 3, "residual_current_ma": 64, "current_a": 64,
    "port_current_a": MAX_PORTS, "port_power_w": MAX_PORTS, "port_temp_c": MAX_PORTS,
}
_MAX_TEXT = 64

_RFC3339 = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def is_number(v: Any) -> bool:
    """True for int and float values (bool is not a number here)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def finite_float(v: Any) -> float | None:
    """`v` as a float if it is a finite number (an int too large for a float is not), else None."""
    if not is_number(v):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def validate_metric(name: str, value: Any) -> Any:
    """The canonical value of metric `name`, or DecodeError saying what is wrong with it."""
    kind = METRIC_TYPES[name]
    if kind is float:
        v = _finite(name, value)
        _in_range(name, v)
        return v
    if kind is int:
        v = _finite(name, value)
        if v != int(v):
            raise DecodeError(f"metric {name} must be a whole number, got {value!r}")
        _in_range(name, v)
        return int(v)
    if kind is bool:
        if not isinstance(value, bool):
            raise DecodeError(f"metric {name} must be true or false, got {show(value)}")
        return value
    if kind is list:
        return _number_list(name, value)
    if not isinstance(value, str) or not value or len(value) > _MAX_TEXT or not storable_text(value):
        raise DecodeError(f"metric {name} must be a string of 1 to {_MAX_TEXT} characters, got {show(value)}")
    allowed = _ENUMS.get(name)
    if allowed is not None and value not in allowed:
        raise DecodeError(f"metric {name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _finite(name: str, value: Any) -> float:
    v = finite_float(value)
    if v is None:
        raise DecodeError(f"metric {name} must be a finite number, got {show(value)}")
    return v


def _in_range(name: str, v: float) -> None:
    lo, hi = RANGES.get(name, DEFAULT_RANGE)
    if not lo <= v <= hi:
        raise DecodeError(f"metric {name} must be between {lo:g} and {hi:g}, got {v:g}")


def _number_list(name: str, value: Any) -> list[float]:
    """A list metric's values; a bare number reads as a list of one (CONTRACT §10)."""
    cap = _LIST_CAPS[name]
    if is_number(value):
        value = [value]
    if not isinstance(value, list) or not 1 <= len(value) <= cap:
        raise DecodeError(f"metric {name} must be a list of 1 to {cap} numbers, got {show(value)}")
    out = []
    for x in value:
        f = finite_float(x)
        if f is None:
            raise DecodeError(f"metric {name} must hold finite numbers only, got {show(x)}")
        _in_range(name, f)
        out.append(f)
    return out


def show(value: Any) -> str:
    """A short description of a bad value for a reason sentence."""
    if isinstance(value, (dict, list)):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_kind(value: Any) -> Kind:
    kind = KIND_BY_NAME.get(value) if isinstance(value, str) else None
    if kind is None:
        raise DecodeError(f"kind must be one of {', '.join(Kind.__members__)}, got {show(value)}")
    return kind


def parse_event(value: Any) -> Event:
    event = EVENT_BY_NAME.get(value) if isinstance(value, str) else None
    if event is None:
        raise DecodeError(f"unknown event {show(value)}")
    return event


def check_device_id(device_id: Any) -> str:
    if not isinstance(device_id, str) or DEVICE_ID_RE.fullmatch(device_id) is None:
        raise DecodeError(f"device id {show(device_id)} is not 1 to 64 characters of A-Z a-z 0-9 _ . : -")
    return device_id


def check_ts_ms(ts_ms: int) -> int:
    if not 0 <= ts_ms <= MAX_TS_MS:
        raise DecodeError(f"time {ts_ms} ms is outside 1970-01-01 .. 9999-12-31")
    return ts_ms


def parse_ts(value: Any, received_ms: int) -> int:
    """Epoch ms from a number of ms or an RFC 3339 string; absent (None) is the receive time."""
    if value is None:
        return received_ms
    if isinstance(value, str):
        return check_ts_ms(rfc3339_ms(value))
    f = finite_float(value)
    if f is None or f != int(f):
        raise DecodeError(f"ts must be epoch milliseconds or an RFC 3339 string, got {show(value)}")
    return check_ts_ms(value if isinstance(value, int) else int(f))


def rfc3339_ms(text: str) -> int:
    """Epoch ms of an RFC 3339 timestamp (fractions below a millisecond are truncated)."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise DecodeError(f"ts {show(text)} is not an RFC 3339 time such as 2026-11-22T08:00:00Z")
    date, clock, frac, zone = m.groups()
    zone = "+00:00" if zone in "Zz" else zone
    try:
        dt = datetime.fromisoformat(f"{date}T{clock}{zone}")
    except ValueError:
        raise DecodeError(f"ts {text!r} names no real date and time") from None
    ms = int(((frac or "") + "000")[:3])
    return (dt - _EPOCH) // timedelta(milliseconds=1) + ms


def check_extra(key: str, value: Any) -> Any:
    """`value` if it may be kept in `extra`: finite numbers, nesting at most MAX_EXTRA_DEPTH."""
    problem = _tree_problem(value, MAX_EXTRA_DEPTH) if storable_text(key) else "is text PostgreSQL cannot store"
    if problem is not None:
        raise DecodeError(f"data key {show(key)} {problem}")
    return value


def check_tree(value: Any, max_depth: int, what: str) -> Any:
    """`value` if it nests at most `max_depth` levels and holds only finite numbers."""
    problem = _tree_problem(value, max_depth)
    if problem is not None:
        raise DecodeError(f"{what} {problem}")
    return value


def _tree_problem(value: Any, max_depth: int) -> str | None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            return "holds a non-finite number"
        if isinstance(v, str) and not storable_text(v):
            return "holds text with a NUL character or an unpaired surrogate"
        if isinstance(v, (dict, list)):
            if depth > max_depth:
                return f"is nested deeper than {max_depth} levels"
            if isinstance(v, dict):
                stack.extend((k, depth) for k in v)
                stack.extend((x, depth + 1) for x in v.values())
            else:
                stack.extend((x, depth + 1) for x in v)
    return None


def storable_text(s: str) -> bool:
    """False for text PostgreSQL's JSON cannot hold: NUL, or a lone surrogate from a \\ud800 escape."""
    if "\x00" in s:
        return False
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


JSON_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def load_json(text: str | bytes, what: str) -> Any:
    """Parse JSON text (UTF-8 bytes or str); DecodeError names `what` it should have been."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DecodeError(f"{what} is not UTF-8 text (bad byte at offset {e.start})") from None
    try:
        return JSON_DECODER.decode(text)
    except RecursionError:
        raise DecodeError(f"{what} is nested too deeply") from None
    except ValueError as e:
        raise DecodeError(f"{what} is not valid JSON: {str(e).splitlines()[0][:120]}") from None

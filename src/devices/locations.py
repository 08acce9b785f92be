"""Where a unit or a device is: a structured location, validated in one place.

A location is free text (`"3F kitchen"`) or an object with any of `building`, `floor`, `room`,
`lat`, `lon` (WGS-84 degrees, both or neither) and `text`; other keys are kept as given. A floor
is a whole number (negative below ground) or a short text such as `B1`, `3F`, `夹层`.
`floor_key` names a floor the same way however it was written (`3`, `"3F"`, `"3楼"` -> `"3"`;
`-1`, `"B1"`, `"地下1层"` -> `"B1"`), so a floor plan and the devices on its floor meet.
"""

from __future__ import annotations

import math
import re
from typing import Any

TEXT_KEYS = {"building": 100, "room": 100, "text": 500}
MAX_TEXT = 500
FLOOR_RANGE = (-20, 300)
MAX_FLOOR_TEXT = 16
_ABOVE = re.compile(r"^(?:F\s*)?(\d{1,3})\s*(?:F|楼|层)?$")
_BELOW = re.compile(r"^(?:B|-|地下|负)\s*(\d{1,2})\s*(?:F|楼|层)?$")


class InvalidLocation(ValueError):
    """A location is malformed; the message names the field and what is wrong."""


def parse_location(raw: Any) -> dict[str, Any] | str | None:
    """The location as stored (texts trimmed, `lat`/`lon` floats); `InvalidLocation` naming the problem."""
    if raw is None:
        return None
    if isinstance(raw, str):
        text = raw.strip()
        if len(text) > MAX_TEXT:
            raise InvalidLocation(f"location is longer than {MAX_TEXT} characters")
        return text or None
    if not isinstance(raw, dict):
        raise InvalidLocation("location must be an object or a text")
    out = dict(raw)
    for key, max_len in TEXT_KEYS.items():
        if key in out:
            out[key] = _text(out[key], key, max_len)
    if "floor" in out:
        out["floor"] = parse_floor(out["floor"])
    for key, bound in (("lat", 90.0), ("lon", 180.0)):
        if key in out:
            out[key] = _degrees(out[key], key, bound)
    if ("lat" in out) != ("lon" in out):
        raise InvalidLocation("location: lat and lon go together (WGS-84 degrees); give both or neither")
    return out


def _text(value: Any, key: str, max_len: int) -> str:
    if not isinstance(value, str):
        raise InvalidLocation(f"location.{key} must be a text")
    value = value.strip()
    if len(value) > max_len:
        raise InvalidLocation(f"location.{key} is longer than {max_len} characters")
    return value


def _degrees(value: Any, key: str, bound: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidLocation(f"location.{key} must be a number of degrees")
    if not -bound <= value <= bound:
        raise InvalidLocation(f"location.{key} must be from {-bound:g} to {bound:g}, got {value}")
    return float(value)


def parse_floor(value: Any) -> int | str:
    """A floor as given: a whole number within `FLOOR_RANGE` or a short text (`B1`, `3F`, `夹层`)."""
    if isinstance(value, int) and not isinstance(value, bool):
        low, high = FLOOR_RANGE
        if not low <= value <= high:
            raise InvalidLocation(f"location.floor must be from {low} to {high}, got {value}")
        return value
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > MAX_FLOOR_TEXT:
        raise InvalidLocation(f"location.floor must be a whole number or a text of 1 to {MAX_FLOOR_TEXT} "
                              "characters such as B1 or 3F")
    return value.strip()


def floor_key(value: Any) -> str:
    """One name per floor, however it is written: `"3"` above ground, `"B1"` below, else the text upper-cased."""
    floor = parse_floor(value)
    if isinstance(floor, int):
        return str(floor) if floor >= 0 else f"B{-floor}"
    text = floor.upper()
    if below := _BELOW.match(text):
        return f"B{int(below[1])}"
    if above := _ABOVE.match(text):
        return str(int(above[1]))
    return text

"""Page cursors of the list routes, parsed strictly: a cursor this service did not hand out
(unicode digits such as `²` or `١٢٣`, a sign, a number beyond PostgreSQL's bigint, garbage) is
the caller's error, 400, never a 500 or a silently different page."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from fastapi import HTTPException

from devices.kinds import DEVICE_ID_RE

#: ASCII digits only (`str.isdigit` also takes `²` and `١٢٣`), at most 18 of them: below 2**63.
_INT = re.compile(r"[0-9]{1,18}")


def bad_cursor() -> HTTPException:
    return HTTPException(400, "cursor 不是本列表给出的 next_cursor / cursor is not a next_cursor of this list")


def int_cursor(text: str) -> int:
    """A non-negative integer cursor (an id or an offset)."""
    if not _INT.fullmatch(text):
        raise bad_cursor()
    return int(text)


def id_cursor(text: str) -> str:
    """A cursor that is a device or unit id."""
    if not DEVICE_ID_RE.fullmatch(text):
        raise bad_cursor()
    return text


def time_cursor(text: str) -> tuple[datetime, str]:
    """A `<epoch microseconds>:<tie-breaker>` cursor: the time and the tie-breaker's text."""
    us, sep, rest = text.partition(":")
    if not sep:
        raise bad_cursor()
    try:
        return datetime.fromtimestamp(int_cursor(us) / 1_000_000, UTC), rest
    except (OverflowError, OSError, ValueError):  # beyond the years datetime can hold
        raise bad_cursor() from None

"""Work-order vocabulary (CONTRACT §11): kinds, states, the transitions a person may make, the
default due date and the overdue test. Pure: times and time zones are passed in."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

#: Kinds the sweep opens by itself, with the condition each stands for.
AUTO_KINDS = ("repair", "reconnect", "battery", "tamper", "false_alarms", "shielded")
#: Every kind; `hidden_danger` (and any of the others) may be opened by hand.
KINDS = (*AUTO_KINDS, "hidden_danger")
STATES = ("open", "assigned", "fixed", "verified", "cancelled")
#: States of an order that is no longer live: it frees its (device, kind) and is never overdue.
CLOSED = ("verified", "cancelled")
#: States a person may set through PATCH, from the states allowed before each.
MANUAL: dict[str, tuple[str, ...]] = {
    "open": ("assigned",),
    "assigned": ("open", "assigned"),
    "fixed": ("open", "assigned"),
    "cancelled": ("open", "assigned", "fixed"),
    "verified": ("fixed",),  # by hand only for an order without devices (else the sweep verifies it)
}


class BadTransition(ValueError):
    """A state change the order's current state does not allow (409)."""


def check_transition(current: str, target: str, *, has_devices: bool) -> None:
    """Raise `BadTransition` unless a person may move an order from `current` to `target`."""
    if current == target:
        return
    if current not in MANUAL.get(target, ()):
        raise BadTransition(f"工单状态 {current} 不能改为 {target} / a {current} work order cannot become {target}")
    if target == "verified" and has_devices:
        raise BadTransition(
            "有设备的工单在设备恢复正常后自动验证 / an order with devices is verified when they report healthy")


def default_due(now: datetime, tz: ZoneInfo) -> date:
    """The last day of the month after `now`'s month, in `tz`."""
    local = now.astimezone(tz).date()
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    following = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return date.fromordinal(following.toordinal() - 1)


def is_overdue(due: date, state: str, now: datetime, tz: ZoneInfo) -> bool:
    """Past `due` (the whole due day counts, in `tz`) while not verified or cancelled."""
    return state not in CLOSED and now.astimezone(tz).date() > due

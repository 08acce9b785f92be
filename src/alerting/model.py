"""Alarm vocabulary of CONTRACT §5 and the decisions the correlation core hands to the lifecycle."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

#: Alarm statuses (CONTRACT §5) of an alarm still sounding, and of one not yet closed: an open
#: alarm is the one a new decision of its (key, type) updates (one per key and type in PostgreSQL).
ACTIVE_STATUSES = ("active_unack", "active_ack")
OPEN_STATUSES = (*ACTIVE_STATUSES, "cleared_unack")


class AlarmType(IntEnum):
    fire = 0
    smoke = 1
    gas_leak = 2
    residual_current = 3
    cable_overheat = 4
    arc_fault = 5
    overvoltage = 6
    water_pressure_low = 7
    offline = 8
    network_outage = 9
    tamper = 10
    low_battery = 11
    device_fault = 12
    panel_fire = 13
    panel_fault = 14
    duty_missed = 15  # 查岗 not answered in time (CONTRACT §11)


class Severity(IntEnum):
    critical = 0
    major = 1
    minor = 2
    warning = 3


class Response(IntEnum):
    immediate = 0  # 秒响应
    verify = 1
    none = 2


#: Alarm types of the fire class: they correlate across detectors (CONTRACT §8).
FIRE_CLASS = frozenset({AlarmType.fire, AlarmType.smoke, AlarmType.gas_leak, AlarmType.panel_fire})


@dataclass(slots=True)
class Decision:
    """One thing the core decided about one alarm key.

    `action` is `raise` (raise, or fold into the open alarm of (key, type)) or `clear` (the
    condition ended). Suppression (tests, mutes, maintenance, flapping, transients) is
    expressed by `response` and `rule`, never by dropping the decision: suppressed alarms stay
    visible. `key` is `device:<detector_id>`, `unit:<unit_id>` or `cell:<cell_id>`.
    """

    action: str
    key: str
    type: AlarmType
    severity: Severity
    response: Response
    rule: str
    ts_ms: int
    device_ids: list[str] = field(default_factory=list)
    unit_id: str | None = None
    evidence: list[dict[str, Any]] = field(default_factory=list)

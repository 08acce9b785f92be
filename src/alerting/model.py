"""Alarm statuses of CONTRACT §5 and the decisions the correlation core hands to the lifecycle
(alarm types, severities and responses are declared in `devices.catalogue`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from devices.catalogue import ALARM_TYPES, AlarmType, Response, Severity

#: Alarm statuses (CONTRACT §5) of an alarm still sounding, and of one not yet closed: an open
#: alarm is the one a new decision of its (key, type) updates (one per key and type in PostgreSQL).
ACTIVE_STATUSES = ("active_unack", "active_ack")
OPEN_STATUSES = (*ACTIVE_STATUSES, "cleared_unack")


#: Alarm types of the fire class: they correlate across detectors (CONTRACT §8).
FIRE_CLASS = frozenset(t for t, spec in ALARM_TYPES.items() if spec.fire_class)
#: Alarm types of the electrical class, for the electrical-then-smoke rule (CONTRACT §8, §10).
ELECTRICAL_CLASS = frozenset(t for t, spec in ALARM_TYPES.items() if spec.electrical_class)

__all__ = ["ACTIVE_STATUSES", "ELECTRICAL_CLASS", "FIRE_CLASS", "OPEN_STATUSES", "AlarmType", "Decision", "Response",
           "Severity"]


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

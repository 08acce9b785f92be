"""The canonical reading every payload kind decodes to (CONTRACT §1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from devices.kinds import Event, Kind


@dataclass(slots=True)
class Reading:
    """One decoded report.

    Times are epoch milliseconds (UTC). `metrics` holds canonical metric names only
    (see `devices.kinds`); anything else a report carried is kept in `extra`.
    `component` names a panel component inside a `uitd` device (`system_type:system_addr:
    component_addr`); such a component counts as its own detector (`detector_id`). `untimed`: the
    report carried no device time, so `ts_ms` is the receive time (CONTRACT §2) and is no part of
    its identity when a redelivered copy is recognised.
    """

    device_id: str
    kind: Kind
    event: Event
    ts_ms: int
    received_ms: int
    seq: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    component: str | None = None
    untimed: bool = False

    @property
    def detector_id(self) -> str:
        return self.device_id if self.component is None else f"{self.device_id}:{self.component}"

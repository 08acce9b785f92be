"""Look-ups of CONTRACT §1's vocabulary for the codecs and hot paths, derived from `devices.catalogue`
(where kinds, events and metrics are declared: add there, not here)."""

from __future__ import annotations

import re

from devices.catalogue import FAULT_CODES, KINDS, METRICS, NB_METRIC_NAMES, Event, Kind

DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


#: Look-ups for hot paths: `__members__` builds a mapping proxy per access and `.name` is a property.
KIND_BY_NAME: dict[str, Kind] = dict(Kind.__members__)
EVENT_BY_NAME: dict[str, Event] = dict(Event.__members__)
KIND_NAMES: dict[Kind, str] = {k: k.name for k in Kind}
EVENT_NAMES: dict[Event, str] = {e: e.name for e in Event}

#: Events that belong on the `evt` priority lane.
ATTENTION_EVENTS = frozenset(Event) - {Event.heartbeat, Event.report}

GAS_TYPES = METRICS["gas_type"].values
VALVE_STATES = METRICS["valve"].values
BREAKER_STATES = METRICS["breaker"].values

#: Metric name -> python type of its value. Lists hold one value per channel, phase or port.
NB_METRICS: dict[str, type] = {name: METRICS[name].type for name in NB_METRIC_NAMES}
KIND_METRICS: dict[Kind, dict[str, type]] = {
    kind: {name: METRICS[name].type for name in spec.metrics} for kind, spec in KINDS.items()
}
#: Every known metric name (a report's other `data` keys go to `extra`).
ALL_METRICS: frozenset[str] = frozenset(METRICS)

__all__ = [
    "ALL_METRICS", "ATTENTION_EVENTS", "BREAKER_STATES", "DEVICE_ID_RE", "EVENT_BY_NAME", "EVENT_NAMES", "FAULT_CODES",
    "GAS_TYPES", "KIND_BY_NAME", "KIND_METRICS", "KIND_NAMES", "NB_METRICS", "VALVE_STATES", "Event", "Kind",
]

"""The vocabulary of CONTRACT §1: device kinds, events, metrics and fault codes.

Kinds and events have stable small integer codes. MX1 frames use them on the wire and the
columnar batches and fleet state use them as numpy values, so they must never be renumbered.
"""

from __future__ import annotations

import re
from enum import IntEnum

DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class Kind(IntEnum):
    """Device kinds; codes 1-4 are MX1's, `uitd` has no MX1 code."""

    smoke = 1
    gas = 2
    electrical = 3
    water = 4
    uitd = 5

    @classmethod
    def parse(cls, name: str) -> Kind:
        try:
            return cls[name]
        except KeyError:
            raise ValueError(f"unknown kind {name!r}; expected one of {', '.join(k.name for k in cls)}") from None


class Event(IntEnum):
    """Events; codes are MX1's event codes."""

    heartbeat = 0
    report = 1
    alarm = 2
    alarm_clear = 3
    fault = 4
    fault_clear = 5
    tamper = 6
    tamper_clear = 7
    low_battery = 8
    test = 9
    mute = 10
    power_fail = 11
    power_restore = 12
    valve_closed = 13
    valve_opened = 14
    breaker_tripped = 15
    breaker_closed = 16

    @classmethod
    def parse(cls, name: str) -> Event:
        try:
            return cls[name]
        except KeyError:
            raise ValueError(f"unknown event {name!r}") from None


#: Look-ups for hot paths: `__members__` builds a mapping proxy per access and `.name` is a property.
KIND_BY_NAME: dict[str, Kind] = dict(Kind.__members__)
EVENT_BY_NAME: dict[str, Event] = dict(Event.__members__)
KIND_NAMES: dict[Kind, str] = {k: k.name for k in Kind}
EVENT_NAMES: dict[Event, str] = {e: e.name for e in Event}

#: Events that belong on the `evt` priority lane.
ATTENTION_EVENTS = frozenset(Event) - {Event.heartbeat, Event.report}

FAULT_CODES = ("sensor", "chamber_dirty", "low_battery", "comm", "probe_open", "probe_short", "valve", "power")
GAS_TYPES = ("methane", "lpg", "co", "hydrogen")
VALVE_STATES = ("open", "closed", "none")
BREAKER_STATES = ("closed", "tripped")

#: Metric name -> python type of its value. Lists hold one value per channel or phase.
NB_METRICS: dict[str, type] = {
    "battery_pct": float,
    "battery_mv": float,
    "rsrp_dbm": float,
    "sinr_db": float,
    "ecl": int,
    "pci": int,
    "cell_id": str,
}
KIND_METRICS: dict[Kind, dict[str, type]] = {
    Kind.smoke: {"smoke_obscuration_pct_m": float, "temperature_c": float},
    Kind.gas: {"gas_lel_pct": float, "gas_type": str, "valve": str, "mains_ok": bool},
    Kind.electrical: {
        "residual_current_ma": list,
        "cable_temp_c": list,
        "voltage_v": list,
        "current_a": list,
        "power_kw": float,
        "arc_faults": int,
        "pyrolysis_index": float,
        "breaker": str,
    },
    Kind.water: {"pressure_mpa": float, "level_m": float},
    Kind.uitd: {},
}
#: Every known metric name (a report's other `data` keys go to `extra`).
ALL_METRICS: frozenset[str] = frozenset(NB_METRICS).union(*(m.keys() for m in KIND_METRICS.values())) | {
    "fault_code"
}

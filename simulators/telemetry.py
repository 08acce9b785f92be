"""Readings of simulated devices: normal values of every kind plus radio and battery, at a given time.

Everything is a function of the fleet seed, the device and the time, so a reading is the same
whichever order scenarios and background traffic are generated in. Normal values stay well
inside every CONTRACT §8 threshold; scenarios override the metrics they are about.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from devices.kinds import ATTENTION_EVENTS, Event, Kind
from devices.reading import Reading
from simulators.fleet import SimDevice, noise

Lane = Literal["evt", "tel"]


def seq_for(at_ms: int) -> int:
    """A device's sequence number for a report sent at `at_ms`: its decisecond clock modulo 2^16.

    It fits MX1's u16, grows with time (wrapping every 109 minutes) and differs between two
    reports of one device sent 100 ms or more apart, so the service's (device, seq) dedupe only
    ever drops true duplicates, also when scenarios run back to back on one fleet.
    """
    return (at_ms // 100) & 0xFFFF


def lane_of(event: Event) -> Lane:
    """`evt` for events that need attention, `tel` for heartbeats and periodic values (CONTRACT §2)."""
    return "evt" if event in ATTENTION_EVENTS else "tel"


def ambient_c(dev: SimDevice, at_ms: int) -> float:
    """Indoor temperature at the device: a daily cycle (coolest 03:00 UTC+8) plus a fixed offset."""
    hour = ((at_ms / 3_600_000) + 8) % 24
    daily = 4.0 * math.sin(2 * math.pi * (hour - 9) / 24)
    return round(23.0 + daily + 3.0 * noise(dev.seed, dev.device_id, "ambient"), 1)


def nb_metrics(dev: SimDevice, at_ms: int) -> dict[str, Any]:
    """Battery and radio metrics an NB-IoT device adds to every report."""
    out = dev.signal_at(at_ms)
    battery = dev.battery_at(at_ms)
    if battery is not None:
        out["battery_pct"] = battery
        out["battery_mv"] = round(2500 + 11 * battery)
    return out


def normal_metrics(dev: SimDevice, at_ms: int) -> dict[str, Any]:
    """The role's metrics in a quiet state at `at_ms` (no uitd metrics: a panel reports states)."""
    def n(tag: str) -> float:
        return noise(dev.seed, dev.device_id, tag, at_ms // 60_000)

    match dev.role:
        case "smoke":
            return {"smoke_obscuration_pct_m": round(0.06 + 0.04 * n("obs"), 2), "temperature_c": ambient_c(dev, at_ms)}
        case "gas":
            return {"gas_lel_pct": round(0.6 + 0.5 * n("lel"), 1), "gas_type": dev.gas_type or "methane",
                    "valve": dev.valve or "none", "mains_ok": True}
        case "co":
            return {"gas_type": "co", "co_ppm": round(3 + 2 * n("co"))}
        case "monitor":
            temp = ambient_c(dev, at_ms) + 12
            return {
                "residual_current_ma": [round(55 + 30 * n(f"rc{i}")) for i in range(dev.channels)],
                "cable_temp_c": [round(temp + 4 * n(f"ct{i}"), 1) for i in range(min(4, dev.phases + 1))],
                "voltage_v": [round(225 + 4 * n(f"v{i}"), 1) for i in range(dev.phases)],
                "current_a": [round(18 + 8 * n(f"a{i}"), 2) for i in range(dev.phases)],
                "power_kw": round(dev.phases * 4.0 * (1 + 0.3 * n("p")), 3),
            }
        case "pyrolysis":
            return {"pyrolysis_index": round(6 + 4 * n("py"))}
        case "breaker":
            current = round(9 + 5 * n("a"), 2)
            return {"voltage_v": [round(225 + 4 * n("v"), 1)], "current_a": [current],
                    "power_kw": round(current * 0.225, 3), "arc_faults": 0, "breaker": "closed"}
        case "pressure":
            return {"pressure_mpa": round(0.42 + 0.03 * n("p"), 3)}
        case "level":
            return {"level_m": round(3.2 + 0.1 * n("lvl"), 2)}
        case "hydrant":
            return {"pressure_mpa": round(0.30 + 0.02 * n("p"), 3), "flow_m3h": 0.0,
                    "tilt_deg": round(1.2 + 0.8 * n("tilt"), 1)}
        case "charger":
            return charger_metrics(dev, at_ms, {})
    return {}


def charging(dev: SimDevice, port: int, at_ms: int) -> bool:
    """Whether `port` (from 1) of a charger is charging at `at_ms`: a seeded draw per half hour, busier
    in the evening and at night (UTC+8)."""
    hour = ((at_ms / 3_600_000) + 8) % 24
    busy = 0.6 if hour >= 19 or hour < 7 else 0.3
    return noise(dev.seed, dev.device_id, "port", port, at_ms // 1_800_000) < 2 * busy - 1


def charger_metrics(dev: SimDevice, at_ms: int, hot: dict[int, tuple[float, float]]) -> dict[str, Any]:
    """A charger's port lists at `at_ms`; `hot` maps a port (from 1) to the (current A, temperature °C)
    it has instead of its quiet values (a scenario's overheating port)."""
    amb = ambient_c(dev, at_ms)
    currents, temps = [], []
    for port in range(1, dev.ports + 1):
        if port in hot:
            current, temp = hot[port]
        elif charging(dev, port, at_ms):
            current = round(1.6 + 0.5 * noise(dev.seed, dev.device_id, "a", port, at_ms // 60_000), 2)
            temp = round(amb + 6 + 3 * noise(dev.seed, dev.device_id, "t", port, at_ms // 60_000), 1)
        else:
            current, temp = 0.0, round(amb + 1, 1)
        currents.append(current)
        temps.append(temp)
    minute = at_ms // 60_000
    volts = round(228 + 3 * noise(dev.seed, dev.device_id, "v", minute), 1)
    return {
        "port_current_a": currents, "port_power_w": [round(a * volts) for a in currents], "port_temp_c": temps,
        "voltage_v": [volts], "residual_current_ma": [round(3 + 2 * noise(dev.seed, dev.device_id, "rc", minute))],
        "ports_active": sum(a > 0 for a in currents),
    }


def make_reading(
    dev: SimDevice,
    event: Event,
    at_ms: int,
    metrics: dict[str, Any] | None = None,
    *,
    component: str | None = None,
    extra: dict[str, Any] | None = None,
    normal: bool = True,
) -> Reading:
    """A reading of `dev` sent at `at_ms`: NB metrics, then (if `normal`) quiet kind metrics, then
    `metrics` on top. Device time and receive time are both `at_ms` (the service sets its own)."""
    values: dict[str, Any] = nb_metrics(dev, at_ms)
    if normal and component is None:
        values.update(normal_metrics(dev, at_ms))
    values.update(metrics or {})
    return Reading(
        device_id=dev.device_id,
        kind=dev.kind,
        event=event,
        ts_ms=at_ms,
        received_ms=at_ms,
        seq=seq_for(at_ms),
        metrics=values,
        extra=dict(extra or {}),
        component=component,
    )


def routine_event(dev: SimDevice) -> Event:
    """What a device sends on its schedule: values for electrical, water and charger monitors, else a heartbeat."""
    return Event.report if dev.kind in (Kind.electrical, Kind.water, Kind.charger) else Event.heartbeat

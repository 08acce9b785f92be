"""When the sweep opens a work order, and when a fixed one is verified (CONTRACT §11).

Pure functions over facts the sweep gathers (live fleet flags, alarm history, shielded panel
points of `alerting.shields`) and an injected `now`:

- `repair`: a fault alarm (`device_fault`, `panel_fault`) of the device open for 24 h or more;
- `reconnect`: the device offline for more than 72 h;
- `battery`: low battery; `tamper`: tampered with;
- `false_alarms`: a detector marked flapping, or 3 or more of its alarms resolved as
  `false_alarm` within 30 days;
- `shielded`: a panel point shielded (屏蔽) for 24 h or more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from devices.fleet import FAULT, FLAPPING, LOW_BATTERY, OFFLINE, ONLINE, TAMPER

FAULT_AFTER = timedelta(hours=24)
OFFLINE_AFTER = timedelta(hours=72)
SHIELDED_AFTER = timedelta(hours=24)
FALSE_ALARM_WINDOW = timedelta(days=30)
FALSE_ALARMS = 3


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What the sweep knows of one device: live flags (with its transmission device's liveness),
    since when it is offline and when it was last heard from (None: never)."""

    device_id: str
    unit_id: str | None
    flags: int
    offline_since: datetime | None = None
    last_seen: datetime | None = None


@dataclass(frozen=True, slots=True)
class History:
    """Alarm and panel history: when each device's open fault alarm was raised, how many of its
    alarms were resolved as false in the last 30 days, and since when (and which point of it)
    each device has a shielded panel point."""

    faults_since: Mapping[str, datetime]
    false_alarms: Mapping[str, int]
    shielded_since: Mapping[str, tuple[datetime, str]]


@dataclass(frozen=True, slots=True)
class Candidate:
    """An order the sweep should open unless one of (device, kind) is live already."""

    kind: str
    device_id: str
    unit_id: str | None
    reason: str


def _hours(d: timedelta) -> int:
    return int(d.total_seconds() // 3600)


def candidates(devices: Iterable[DeviceFacts], history: History, now: datetime) -> list[Candidate]:
    """Every (device, kind) whose condition holds at `now`, in device order then kind order."""
    out: list[Candidate] = []
    for d in devices:
        def add(kind: str, reason: str, device: DeviceFacts = d) -> None:
            out.append(Candidate(kind, device.device_id, device.unit_id, reason))

        since = history.faults_since.get(d.device_id)
        if since is not None and now - since >= FAULT_AFTER:
            add("repair", f"故障 {_hours(now - since)} 小时未排除 / fault not cleared for {_hours(now - since)} h")
        if d.flags & OFFLINE and d.offline_since is not None and now - d.offline_since > OFFLINE_AFTER:
            h = _hours(now - d.offline_since)
            add("reconnect", f"离线 {h} 小时 / offline for {h} h")
        if d.flags & LOW_BATTERY:
            add("battery", "电池电量低 / low battery")
        if d.flags & TAMPER:
            add("tamper", "设备被拆 / tampered with")
        n = history.false_alarms.get(d.device_id, 0)
        if d.flags & FLAPPING:
            add("false_alarms", "探测器频繁报警复位 / flapping detector")
        elif n >= FALSE_ALARMS:
            add("false_alarms", f"30 天内误报 {n} 次 / {n} false alarms in 30 days")
        shield = history.shielded_since.get(d.device_id)
        if shield is not None and now - shield[0] >= SHIELDED_AFTER:
            h = _hours(now - shield[0])
            add("shielded", f"点位 {shield[1]} 屏蔽 {h} 小时 / point {shield[1]} shielded for {h} h")
    return out


def healthy(kind: str, device: DeviceFacts | None, shielded: bool, fixed_at: datetime) -> bool:
    """Whether `device` reports healthy again for an order of `kind` fixed at `fixed_at`: heard
    from since, online, and the order's condition gone (any fault, tamper or low battery for
    `hidden_danger`). An unknown device is not healthy."""
    if device is None or device.last_seen is None or device.last_seen < fixed_at or not device.flags & ONLINE:
        return False
    gone = {
        "repair": not device.flags & FAULT,
        "reconnect": True,
        "battery": not device.flags & LOW_BATTERY,
        "tamper": not device.flags & TAMPER,
        "false_alarms": not device.flags & FLAPPING,
        "shielded": not shielded,
        "hidden_danger": not device.flags & (FAULT | TAMPER | LOW_BATTERY),
    }
    return gone[kind]

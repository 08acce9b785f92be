"""Flood control, pure parts: repeats of an open alarm waiting to be written, and the per-device
alarm rate that marks a detector `flooding` (docs/escalation.md, "Flooding detectors").

A repeat (a raise that only bumps an open alarm's count and last_seen) is not written on its own:
`AlarmLifecycle` adds it to the alarm's `Repeats` and writes them once per second, one update and
one stream event per alarm. `FloodWatch` counts every decision of a `device:` key per second on
the service clock; a device at or above the bound in every second of the window is flooding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from alerting.model import Decision

DEVICE_KEY = "device:"


@dataclass(slots=True)
class Repeats:
    """Repeats of one open alarm not yet written: how many, and the newest decision."""

    alarm_id: int
    count: int
    last: Decision

    def add(self, d: Decision) -> None:
        self.count += 1
        if d.ts_ms >= self.last.ts_ms:
            self.last = d

    def merge(self, newer: Repeats) -> Repeats:
        """These (older, not written) followed by `newer` ones of the same alarm."""
        last = newer.last if newer.last.ts_ms >= self.last.ts_ms else self.last
        return Repeats(self.alarm_id, self.count + newer.count, last)


@dataclass(slots=True)
class FloodWatch:
    """Alarm decisions per device and second; `due` names the devices above `rate_per_s` for a
    whole `window_s`."""

    rate_per_s: float
    window_s: float
    counts: dict[str, int] = field(default_factory=dict)  # since the last `due`
    since_ms: dict[str, int] = field(default_factory=dict)  # start of each device's run above the rate
    last_ms: int | None = None

    def __post_init__(self) -> None:
        if self.rate_per_s <= 0 or self.window_s <= 0:
            raise ValueError("flood rate and window must be positive")

    def count(self, decisions: list[Decision]) -> None:
        for d in decisions:
            if d.key.startswith(DEVICE_KEY):
                device = d.key[len(DEVICE_KEY):]
                self.counts[device] = self.counts.get(device, 0) + 1

    def due(self, now_ms: int) -> list[str]:
        """Close the current interval; answer the devices above the rate since `window_s` or longer."""
        start, self.last_ms = self.last_ms, now_ms
        counts, self.counts = self.counts, {}
        if start is None or now_ms <= start:
            return []
        bound = self.rate_per_s * (now_ms - start) / 1000
        runs = {device: self.since_ms.get(device, start) for device, n in counts.items() if n >= bound}
        self.since_ms = runs
        return [device for device, since in runs.items() if now_ms - since >= self.window_s * 1000]

    def forget(self, device_id: str) -> None:
        """An operator cleared the mark: only a new full window marks the device again."""
        self.since_ms.pop(device_id, None)
        self.counts.pop(device_id, None)

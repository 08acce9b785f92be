"""Bounds on registering unknown devices from their traffic (`MIAOXIANG_UNKNOWN_DEVICES=quarantine`).

Each report of an unregistered device would add a quarantined device: a sender inventing ids
could grow the fleet, the `devices` table and every per-device array without end. So a device is
auto-registered only while the origin that sent it has a token (a bucket per origin, refilled at
`per_min` a minute, holding at most `per_min`) and fewer than `cap` devices are quarantined in
all. Otherwise the report is dead-lettered with the refusal's reason.

An origin is who sent the report as far as the transport can tell: an HTTP push source, an MQTT
gateway's `batch/{gateway}` topic, all single-device MQTT topics of one lane together (their
topic names the device itself, so a bucket per topic would hold one device each), the GB/T 26875
listener.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

RATE_CAUSE = "quarantine_rate"  # the `reason` label of mx_ingest_dead_letters_total
CAP_CAUSE = "quarantine_cap"
RECOUNT_MS = 1000  # how stale the count of quarantined devices may get (it falls when operators register)
MAX_IDLE_BUCKETS = 4096  # past this many buckets, full ones (the same as none) are forgotten


@dataclass(frozen=True, slots=True)
class Refusal:
    cause: str  # the metric's `reason` label
    reason: str  # the dead letter's reason, Chinese first


class TokenBuckets:
    """A token bucket per key: `per_min` tokens a minute, at most `per_min` held; pure (time is passed in)."""

    def __init__(self, per_min: int) -> None:
        self.capacity = float(per_min)
        self.per_ms = per_min / 60_000
        self.buckets: dict[str, tuple[float, int]] = {}  # key -> (tokens, at ms)

    def take(self, key: str, now_ms: int) -> bool:
        """Take one token of `key`'s bucket; False (nothing taken) when it is empty."""
        tokens, at = self.buckets.get(key, (self.capacity, now_ms))
        tokens = min(self.capacity, tokens + max(0, now_ms - at) * self.per_ms)
        if tokens < 1:
            self.buckets[key] = (tokens, now_ms)
            return False
        if len(self.buckets) >= MAX_IDLE_BUCKETS and key not in self.buckets:
            self._forget_full(now_ms)
        self.buckets[key] = (tokens - 1, now_ms)
        return True

    def _forget_full(self, now_ms: int) -> None:
        cap, per_ms = self.capacity, self.per_ms
        self.buckets = {k: (t, at) for k, (t, at) in self.buckets.items() if t + (now_ms - at) * per_ms < cap}


class AutoRegistration:
    """Whether an unknown device may be quarantined now; takes the origin's token when it may."""

    def __init__(self, *, per_min: int, cap: int, count_quarantined: Callable[[], int]) -> None:
        self.per_min = per_min
        self.cap = cap
        self.buckets = TokenBuckets(per_min)
        self.count_quarantined = count_quarantined
        self.quarantined = 0
        self.counted_ms: int | None = None

    def refusal(self, device_id: str, origin: str, now_ms: int) -> Refusal | None:
        """None when `device_id` may be registered (and counts it); else why not."""
        if self.counted_ms is None or now_ms - self.counted_ms >= RECOUNT_MS:
            self.quarantined, self.counted_ms = self.count_quarantined(), now_ms
        if self.quarantined >= self.cap:
            return Refusal(CAP_CAUSE, f"自动注册已达上限 (auto-registration cap): {self.quarantined} devices are "
                                      f"quarantined, the most allowed is {self.cap}; device {device_id} is not "
                                      "registered (register it, or clear quarantined devices)")
        if not self.buckets.take(origin, now_ms):
            return Refusal(RATE_CAUSE, f"自动注册超出速率限制 (auto-registration rate limit): {origin} may register "
                                       f"at most {self.per_min} unknown devices a minute; device {device_id} is not "
                                       "registered")
        self.quarantined += 1
        return None

"""Steady telemetry from a fleet: every device's routine heartbeats or value reports, in time order.

Two paces: each device on its own heartbeat schedule (realistic: a smoke detector once a day,
an electrical monitor every five minutes), or the whole fleet round-robin at a fixed rate of
messages per second (demo and load tests). Both are deterministic for a fleet and seed, honour
scenario `Silence`s, and merge with scenario steps by time (`merge_steps`).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Iterator

from simulators.fleet import SimDevice, SimFleet
from simulators.scenarios import Silence, Step
from simulators.telemetry import lane_of, make_reading, routine_event


def background(
    fleet: SimFleet,
    seed: int,
    start_ms: int,
    end_ms: int | None = None,
    *,
    rate_per_s: float | None = None,
    silences: Iterable[Silence] = (),
) -> Iterator[Step]:
    """Routine steps from `start_ms` until `end_ms` (None: forever), skipping silenced devices.

    `rate_per_s` None follows each device's heartbeat schedule; a number sends that many
    messages per second (scenario time), cycling through the fleet in a seeded order.
    """
    quiet: dict[str, list[Silence]] = {}
    for s in silences:
        quiet.setdefault(s.device_id, []).append(s)
    source = _scheduled(fleet, start_ms) if rate_per_s is None else _paced(fleet, seed, start_ms, rate_per_s)
    for at_ms, dev in source:
        if end_ms is not None and at_ms >= end_ms:
            return
        if any(s.covers(dev.device_id, at_ms) for s in quiet.get(dev.device_id, ())):
            continue
        yield _step(dev, at_ms)


def merge_steps(*streams: Iterable[Step | Silence]) -> Iterator[Step | Silence]:
    """Several time-ordered streams as one (ties keep the order of the arguments)."""
    return heapq.merge(*streams, key=lambda s: s.at_ms)


def _step(dev: SimDevice, at_ms: int) -> Step:
    event = routine_event(dev)
    return Step(at_ms, make_reading(dev, event, at_ms), lane_of(event), dev.transport)


def _scheduled(fleet: SimFleet, start_ms: int) -> Iterator[tuple[int, SimDevice]]:
    heap: list[tuple[int, int, int]] = []  # (at_ms, device index, heartbeat number)
    for i, dev in enumerate(fleet.devices):
        first = next(dev.heartbeats(start_ms, start_ms + 2 * dev.heartbeat_s * 1000))
        k = round((first / 1000 - dev.phase_s) / dev.heartbeat_s)
        heap.append((first, i, k))
    heapq.heapify(heap)
    while heap:
        at_ms, i, k = heap[0]
        dev = fleet.devices[i]
        yield at_ms, dev
        heapq.heapreplace(heap, (dev.heartbeat_at(k + 1), i, k + 1))


def _paced(fleet: SimFleet, seed: int, start_ms: int, rate_per_s: float) -> Iterator[tuple[int, SimDevice]]:
    if rate_per_s <= 0:
        raise ValueError(f"rate_per_s must be positive, got {rate_per_s}")
    order = list(fleet.devices)
    random.Random(f"background:{seed}").shuffle(order)
    i = 0
    while True:
        yield start_ms + round(i * 1000 / rate_per_s), order[i % len(order)]
        i += 1

"""Correlation partitions: which worker correlates a reading, and the compact hand-off between workers.

With `partitions` N > 1 every ingest worker decodes, dedupes and stores what the shared MQTT
subscription gives it, then hands each batch to a `Partitioner` instead of correlating it: the
readings are grouped by partition and published, one compact message per partition and lane, on
`{root}/internal/p/{partition}/{lane}` at QoS 1. The source messages are acknowledged only after
those PUBACKs (the pipeline awaits `on_batch` before it buffers the write). The worker owning a
partition (and the fleet process, which follows all of them) turns the messages back into
readings with `PartitionFeed`.

A reading's partition is `crc32(key) % N`, key `unit:{unit_id}` for a device of a unit, else
`device:{device_id}`, where a uitd component counts as its transmission device (its
`device_id`). crc32, not Python's `hash()`, so that every process agrees.

Wire format, version 1: UTF-8 JSON `{"v": 1, "r": [[device_id, kind, event, ts_ms, received_ms,
seq, metrics, extra, component], ...]}` with kind and event as their integer codes.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections import defaultdict
from collections.abc import Awaitable, Callable

from devices.batch import ReadingColumns
from devices.fleet import Fleet
from devices.kinds import Event, Kind
from devices.reading import Reading
from ingest.pipeline import Clock, Deduper, lane_for
from ingest.storage import identity

Publish = Callable[[str, bytes], Awaitable[None]]
#: The alarm service's batch handler; it may answer a future of its alarm writes, awaited too.
FeedHandler = Callable[[list[Reading], ReadingColumns], Awaitable[object]]
#: 2 adds `untimed`; version 1 messages (from a worker not yet upgraded) are still read.
WIRE_VERSION = 2
MESSAGE_MAX = 2000  # readings per internal message (~0.5 MB): far below broker message limits


class WireError(ValueError):
    """An internal message that is not version-1 readings."""


def partition_of(key: str, partitions: int) -> int:
    return zlib.crc32(key.encode()) % partitions


def partition_key(fleet: Fleet, slot: int, device_id: str) -> str:
    """`unit:{unit}` when the detector in `slot` belongs to a unit, else `device:{device_id}`."""
    unit = int(fleet.unit[slot]) if 0 <= slot < fleet.size else -1
    return f"unit:{fleet.units.names[unit]}" if unit >= 0 else f"device:{device_id}"


def internal_topic(root: str, partition: int | str, lane: str) -> str:
    return f"{root}/internal/p/{partition}/{lane}"


def encode(readings: list[Reading]) -> bytes:
    rows = [[r.device_id, int(r.kind), int(r.event), r.ts_ms, r.received_ms, r.seq, r.metrics, r.extra or None,
             r.component, r.untimed] for r in readings]
    return json.dumps({"v": WIRE_VERSION, "r": rows}, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def decode(payload: bytes) -> list[Reading]:
    try:
        body = json.loads(payload)
        version = body.get("v")
        if version not in (1, WIRE_VERSION):
            raise WireError(f"internal message version {version!r}, expected {WIRE_VERSION}")
        return [
            Reading(device_id=d, kind=Kind(k), event=Event(e), ts_ms=int(ts), received_ms=int(rx), seq=seq,
                    metrics=m or {}, extra=x or {}, component=c, untimed=bool(rest and rest[0]))
            for d, k, e, ts, rx, seq, m, x, c, *rest in body["r"]
        ]
    except WireError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise WireError(f"malformed internal message: {e}") from None


class Partitioner:
    """The pipeline's batch handler on a worker when N > 1: publish each partition's readings."""

    def __init__(self, fleet: Fleet, partitions: int, publish: Publish, topic_root: str) -> None:
        self.fleet = fleet
        self.partitions = partitions
        self.publish = publish
        self.root = topic_root.rstrip("/")

    def split(self, readings: list[Reading], columns: ReadingColumns) -> dict[int, list[Reading]]:
        groups: dict[int, list[Reading]] = defaultdict(list)
        for r, slot in zip(readings, columns.slot.tolist()):
            groups[partition_of(partition_key(self.fleet, slot, r.device_id), self.partitions)].append(r)
        return groups

    async def on_batch(self, readings: list[Reading], columns: ReadingColumns) -> None:
        """Publish and await every PUBACK: the hand-off is durable before the sources are acked."""
        sends = []
        for partition, group in self.split(readings, columns).items():
            for start in range(0, len(group), MESSAGE_MAX):
                chunk = group[start:start + MESSAGE_MAX]
                sends.append(self.publish(internal_topic(self.root, partition, lane_for(chunk)), encode(chunk)))
        await asyncio.gather(*sends)


class PartitionFeed:
    """Internal messages -> readings -> the local fleet's slots -> `on_batch` (correlate or just apply).

    Dedupes again (a redelivered source message may have reached another worker), and registers
    in the local fleet, quarantined, a device this process does not know yet, as the pipeline does.
    """

    def __init__(self, fleet: Fleet, on_batch: FeedHandler, *, clock: Clock, dedupe_window_s: int) -> None:
        self.fleet = fleet
        self.on_batch = on_batch
        self.clock = clock
        self.dedupe = Deduper(dedupe_window_s * 1000)
        self.duplicates = 0

    async def handle(self, payload: bytes) -> int:
        """Feed one internal message; answer how many readings were new. Raises WireError."""
        now = self.clock()
        fresh: list[Reading] = []
        slots: list[int] = []
        for r in decode(payload):
            if self.dedupe.seen(identity(r)[0], now):
                self.duplicates += 1
                continue
            fresh.append(r)
            slots.append(self._slot(r))
        if fresh:
            written = await self.on_batch(fresh, ReadingColumns.from_readings(fresh, slots))  # type: ignore[arg-type]
            if isinstance(written, asyncio.Future):
                await written  # the internal message is acknowledged once its alarms are committed
        return len(fresh)

    def _slot(self, r: Reading) -> int:
        fleet = self.fleet
        slot = fleet.slot(r.device_id)
        if slot < 0:
            slot = fleet.upsert(r.device_id, r.kind, quarantined=True)
        if r.component is None:
            return slot
        comp = fleet.slot(r.detector_id)
        if comp < 0:
            unit = int(fleet.unit[slot])
            comp = fleet.upsert(r.detector_id, r.kind, unit_id=fleet.units.names[unit] if unit >= 0 else None,
                                parent_id=r.device_id)
        return comp


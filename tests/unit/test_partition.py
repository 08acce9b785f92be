"""Correlation partitions: stable keys, the compact wire format, the split of a batch and the feed."""

from __future__ import annotations

import asyncio
import zlib

import numpy as np
import pytest

from devices.batch import ReadingColumns
from devices.fleet import QUARANTINED, Fleet
from devices.kinds import Event, Kind
from devices.reading import Reading
from ingest.partition import (
    MESSAGE_MAX,
    Partitioner,
    PartitionFeed,
    WireError,
    decode,
    encode,
    partition_key,
    partition_of,
)

T0 = 1_795_341_600_000


def fleet_of_two_units() -> Fleet:
    fleet = Fleet()
    for d, unit in [("s1", "u-a"), ("s2", "u-a"), ("s3", "u-d"), ("uitd-7", "u-d")]:
        fleet.upsert(d, Kind.uitd if d.startswith("uitd") else Kind.smoke, unit_id=unit)
    fleet.upsert("loose", Kind.gas)
    fleet.upsert("uitd-7:1:2:3", Kind.uitd, unit_id="u-d", parent_id="uitd-7")
    return fleet


def reading(device: str, *, event: Event = Event.alarm, ts: int = T0, component: str | None = None) -> Reading:
    kind = Kind.uitd if device.startswith("uitd") else Kind.smoke
    return Reading(device, kind, event, ts, ts + 5, seq=3, metrics={"temperature_c": 31.5, "cell_id": "1A2B"},
                   extra={"alarm_code": "leakage"}, component=component)


def columns(fleet: Fleet, readings: list[Reading]) -> ReadingColumns:
    return ReadingColumns.from_readings(readings, fleet.slots([r.detector_id for r in readings]))


def test_partition_is_crc32_of_the_key_not_pythons_hash() -> None:
    assert partition_of("unit:u-a", 7) == zlib.crc32(b"unit:u-a") % 7
    assert {partition_of(f"unit:{i}", 4) for i in range(100)} == {0, 1, 2, 3}


def test_keys_follow_the_unit_and_a_component_its_transmission_device() -> None:
    fleet = fleet_of_two_units()
    assert partition_key(fleet, fleet.slot("s1"), "s1") == partition_key(fleet, fleet.slot("s2"), "s2") == "unit:u-a"
    assert partition_key(fleet, fleet.slot("loose"), "loose") == "device:loose"
    assert partition_key(fleet, fleet.slot("uitd-7:1:2:3"), "uitd-7") == "unit:u-d"
    assert partition_key(fleet, -1, "new") == "device:new"


def test_wire_format_round_trips_every_field() -> None:
    rs = [reading("s1"), reading("uitd-7", component="1:2:3", event=Event.fault),
          Reading("x", Kind.gas, Event.heartbeat, T0, T0),
          Reading("u", Kind.smoke, Event.heartbeat, T0, T0, seq=3, untimed=True)]
    assert decode(encode(rs)) == rs


def test_version_1_messages_of_a_worker_not_yet_upgraded_are_read_as_timed() -> None:
    v1 = b'{"v": 1, "r": [["d1", 1, 0, 1795341600000, 1795341600000, 4, {}, null, null]]}'
    assert decode(v1) == [Reading("d1", Kind.smoke, Event.heartbeat, T0, T0, seq=4)]


@pytest.mark.parametrize("payload", [
    b"not json", b'{"v": 3, "r": []}', b'{"v": 1, "r": [[1, 2]]}',
    b'{"v": 1, "r": [["d", 99, 0, 1, 1, null, {}, null, null]]}',
])
def test_unreadable_internal_messages_raise_wire_error(payload: bytes) -> None:
    with pytest.raises(WireError):
        decode(payload)


def test_a_batch_is_published_once_per_partition_and_lane_and_awaited() -> None:
    fleet = fleet_of_two_units()
    sent: list[tuple[str, list[Reading]]] = []

    async def publish(topic: str, payload: bytes) -> None:
        await asyncio.sleep(0)
        sent.append((topic, decode(payload)))

    p = Partitioner(fleet, 2, publish, "mx/v1/default/")
    rs = [reading("s1"), reading("s2", event=Event.heartbeat), reading("s3", event=Event.heartbeat),
          reading("uitd-7", component="1:2:3", event=Event.heartbeat)]
    asyncio.run(p.on_batch(rs, columns(fleet, rs)))
    a, b = partition_of("unit:u-a", 2), partition_of("unit:u-d", 2)
    assert a != b  # the fixture's units land apart
    by_topic = dict(sent)
    # an alarm in it: evt lane
    assert [r.device_id for r in by_topic[f"mx/v1/default/internal/p/{a}/evt"]] == ["s1", "s2"]
    assert [r.detector_id for r in by_topic[f"mx/v1/default/internal/p/{b}/tel"]] == ["s3", "uitd-7:1:2:3"]
    assert len(sent) == 2


def test_large_groups_are_cut_into_messages_of_bounded_size() -> None:
    fleet = fleet_of_two_units()
    sizes: list[int] = []

    async def publish(_topic: str, payload: bytes) -> None:
        sizes.append(len(decode(payload)))

    rs = [reading("s1", ts=T0 + i, event=Event.heartbeat) for i in range(MESSAGE_MAX * 2 + 1)]
    asyncio.run(Partitioner(fleet, 3, publish, "r").on_batch(rs, columns(fleet, rs)))
    assert sizes == [MESSAGE_MAX, MESSAGE_MAX, 1]


def test_the_feed_dedupes_maps_to_local_slots_and_quarantines_strangers() -> None:
    fleet = fleet_of_two_units()
    batches: list[tuple[list[Reading], ReadingColumns]] = []

    async def on_batch(rs: list[Reading], cols: ReadingColumns) -> None:
        batches.append((rs, cols))

    feed = PartitionFeed(fleet, on_batch, clock=lambda: T0, dedupe_window_s=600)
    msg = encode([reading("s2"), reading("stranger"), reading("uitd-9", component="1:1:1")])
    assert asyncio.run(feed.handle(msg)) == 3
    assert asyncio.run(feed.handle(msg)) == 0 and feed.duplicates == 3
    _rs, cols = batches[0]
    assert len(batches) == 1
    assert cols.slot.tolist() == fleet.slots(["s2", "stranger", "uitd-9:1:1:1"]).tolist()
    assert bool(np.all(cols.slot >= 0))
    assert int(fleet.flags[fleet.slot("stranger")]) & QUARANTINED
    assert int(fleet.parent[fleet.slot("uitd-9:1:1:1")]) == fleet.slot("uitd-9")

"""Simulated devices carry a structured place (issue 19): building, floor and room that the
registry accepts, on the floor their words name; outdoor devices keep a text."""

from __future__ import annotations

from devices.locations import floor_key, parse_location
from devices.registry import DeviceSpec
from simulators.fleet import build_fleet


def test_every_simulated_device_has_a_place_the_registry_accepts() -> None:
    fleet = build_fleet(3000, 7)
    rows = fleet.registry_rows().devices
    assert all(DeviceSpec.parse(row).location == parse_location(row["location"]) for row in rows)
    indoor = [d for d in fleet.devices if isinstance(d.place, dict)]
    assert len(indoor) > 0.9 * len(fleet.devices)
    for d in indoor:
        assert set(d.place) == {"building", "floor", "room"}, d
        if d.role == "smoke":  # "3楼走廊": floor 3, room 走廊
            floor, room = d.location.split("楼", 1)
            assert (floor_key(d.place["floor"]), d.place["room"]) == (floor, room)
    outdoor = [d for d in fleet.devices if d.role == "hydrant"]
    assert outdoor and all(d.place == d.location and isinstance(d.place, str) for d in outdoor)
    assert {d.place["building"] for d in indoor} >= {"主楼", "1号楼", "2号楼", "3号楼"}


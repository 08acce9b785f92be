"""Structured locations (devices.locations): validation, floor names, and the CSV import's
location columns (devices.importer)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.importer import parse_import
from devices.locations import FLOOR_RANGE, InvalidLocation, floor_key, parse_location
from devices.registry import DeviceSpec, InvalidSpec, UnitSpec


def test_a_structured_location_is_trimmed_and_its_coordinates_are_floats() -> None:
    raw = {"building": " 1号楼 ", "floor": "B1", "room": "配电间", "lat": 25, "lon": 114.93, "text": "东侧"}
    assert parse_location(raw) == {"building": "1号楼", "floor": "B1", "room": "配电间", "lat": 25.0, "lon": 114.93,
                                   "text": "东侧"}
    assert parse_location(" 3F kitchen ") == "3F kitchen"
    assert parse_location("  ") is None and parse_location(None) is None
    assert parse_location({"floor": 3}) == {"floor": 3}


@pytest.mark.parametrize(("raw", "says"), [
    ({"lat": 91, "lon": 0}, "location.lat must be from -90 to 90"),
    ({"lat": 0, "lon": -180.5}, "location.lon must be from -180 to 180"),
    ({"lat": "25.8", "lon": 114.9}, "location.lat must be a number"),
    ({"lat": True, "lon": 114.9}, "location.lat must be a number"),
    ({"lat": math.nan, "lon": 1}, "location.lat must be a number"),
    ({"lat": 25.8}, "lat and lon go together"),
    ({"floor": 2.5}, "location.floor must be a whole number or a text"),
    ({"floor": 301}, "location.floor must be from -20 to 300"),
    ({"floor": ""}, "location.floor must be a whole number or a text"),
    ({"floor": "x" * 17}, "location.floor must be a whole number or a text"),
    ({"building": 7}, "location.building must be a text"),
    ({"room": "r" * 101}, "location.room is longer than 100"),
    (5, "location must be an object or a text"),
])
def test_bad_locations_are_refused_with_the_reason(raw: object, says: str) -> None:
    with pytest.raises(InvalidLocation, match=says):
        parse_location(raw)
    with pytest.raises(InvalidSpec, match=says):  # registration says the same (the API's 422)
        DeviceSpec.parse({"device_id": "d1", "kind": "smoke", "location": raw})
    with pytest.raises(InvalidSpec, match=says):
        UnitSpec.parse({"name": "u", "location": raw})


@given(st.integers(min_value=1, max_value=FLOOR_RANGE[1]), st.sampled_from(["{}", "{}F", "F{}", "{}楼", "{}层", "{}f"]))
def test_a_floor_above_ground_has_one_name_however_written(n: int, form: str) -> None:
    assert floor_key(n) == floor_key(form.format(n)) == str(n)


@given(st.integers(min_value=1, max_value=-FLOOR_RANGE[0]), st.sampled_from(["B{}", "b{}", "-{}", "地下{}层", "B{}F"]))
def test_a_floor_below_ground_has_one_name_however_written(n: int, form: str) -> None:
    assert floor_key(-n) == floor_key(form.format(n)) == f"B{n}"


def test_other_floor_texts_are_their_own_names() -> None:
    assert floor_key("夹层") == "夹层" and floor_key(" rf ") == "RF" and floor_key(0) == "0"
    with pytest.raises(InvalidLocation):
        floor_key(1.5)


def test_csv_location_columns_are_folded_into_the_location() -> None:
    text = ("device_id,kind,location,building,floor,room,lat,lon\n"
            "d1,smoke,东侧走廊,1号楼,3,302 室,25.83,114.93\n"
            "d2,smoke,,,B1,,,\n"
            'd3,smoke,"{""text"": ""old""}",2号楼,,,,\n'
            "d4,smoke,,,,,north,114\n"
            "d5,smoke,,,,,91,114\n"
            "d6,smoke,3F kitchen,,,,,\n")
    parsed = parse_import(text, "csv")
    assert [(line, spec.location) for line, spec in parsed.specs] == [
        (2, {"building": "1号楼", "floor": 3, "room": "302 室", "lat": 25.83, "lon": 114.93, "text": "东侧走廊"}),
        (3, {"floor": "B1"}),
        (4, {"text": "old", "building": "2号楼"}),
        (7, "3F kitchen"),
    ]
    assert [(e.line, e.device_id, e.reason) for e in parsed.errors] == [
        (5, "d4", "lat must be a number of degrees, got 'north'"),
        (6, "d5", "location.lat must be from -90 to 90, got 91.0"),
    ]

"""Bulk import parsing and registration specs: line numbers, exact reasons, and a property
check of accepted rows against a plain scalar reference."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.fleet import THRESHOLD_NAMES
from devices.importer import UnusableImport, parse_import
from devices.kinds import Kind
from devices.registry import DeviceSpec, InvalidSpec, UnitSpec, region_chain, region_path


def errors(text: str, fmt: str = "csv") -> list[tuple[int, str | None, str]]:
    return [(e.line, e.device_id, e.reason) for e in parse_import(text, fmt).errors]  # type: ignore[arg-type]


def test_csv_rejects_each_bad_row_with_its_line_and_reason() -> None:
    text = (
        "device_id,kind,unit_id,heartbeat_s,thresholds\n"
        "dev-1,smoke,U1,300,\n"
        "bad id!,smoke,U1,,\n"
        "dev-2,boiler,U1,,\n"
        "dev-3,gas,U1,-5,\n"
        'dev-4,gas,,,"{""nope"": 1}"\n'
        "dev-1,smoke,U2,,\n"
        ",water,U1,,\n"
        "dev-5,water\n"
        'dev-6,electrical,U1,,"{""cable_temp_c"": ""hot""}"\n'
        'dev-7,electrical,U1,,"{not json"\n'
        "dev-8,GAS,U1,1.5,\n"
        "dev-9,uitd,bad unit,,\n"
    )
    assert errors(text) == [
        (3, "bad id!", "device_id 'bad id!' must be 1 to 64 characters of A-Z a-z 0-9 _ . : -"),
        (4, "dev-2", "unknown kind 'boiler'; expected one of smoke, gas, electrical, water, uitd, charger"),
        (5, "dev-3", "heartbeat_s must be a whole number of seconds from 1 to 2592000, got '-5'"),
        (6, "dev-4", f"unknown threshold 'nope'; known: {', '.join(THRESHOLD_NAMES)}"),
        (7, "dev-1", "device_id repeats line 2"),
        (8, None, "device_id is missing"),
        (9, "dev-5", "has 2 fields, the header has 5"),
        (10, "dev-6", "threshold cable_temp_c must be a finite number"),
        (11, "dev-7", "thresholds is not valid JSON"),
        (12, "dev-8", "heartbeat_s must be a whole number of seconds from 1 to 2592000, got '1.5'"),
        (13, "dev-9", "unit_id 'bad unit' must be 1 to 64 characters of A-Z a-z 0-9 _ . : -"),
    ]
    assert [(line, s) for line, s in parse_import(text, "csv").specs] == [
        (2, DeviceSpec("dev-1", Kind.smoke, "U1", None, 300, {}, None, None))
    ]


def test_csv_cells_become_typed_fields() -> None:
    text = (
        "\ufeffDevice_ID,kind,unit_id,location,thresholds,profile,cell_id\n"
        ' 868120301234567 , Gas ,U1,"{""lat"": 25.8, ""lon"": 114.9}","{""gas_lel_pct"": 8}",vendor-x,1A2B3C\n'
        "868120301234568,smoke,,3F kitchen,,,\n"
    )
    specs = [s for _, s in parse_import(text, "csv").specs]
    assert specs == [
        DeviceSpec(
            "868120301234567", Kind.gas, "U1", {"lat": 25.8, "lon": 114.9}, None, {"gas_lel_pct": 8.0}, "vendor-x",
            "1A2B3C",
        ),
        DeviceSpec("868120301234568", Kind.smoke, None, "3F kitchen", None, {}, None, None),
    ]


def test_csv_line_numbers_count_quoted_newlines_and_blank_lines() -> None:
    text = 'device_id,kind,location\n\ndev-1,smoke,"two\nlines"\n\ndev-2,boiler,x\n'
    kinds = "smoke, gas, electrical, water, uitd, charger"
    assert errors(text) == [(6, "dev-2", f"unknown kind 'boiler'; expected one of {kinds}")]
    assert [line for line, _ in parse_import(text, "csv").specs] == [3]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("device_id,kind,colour\nd1,smoke,red\n",
         "unknown column(s) colour; columns are device_id, kind, unit_id, location, heartbeat_s, thresholds, profile,"
         " cell_id, linkage, hydrant, building, floor, room, lat, lon"),
        ("device_id,unit_id\nd1,U1\n", "the header row must name at least device_id and kind"),
        ("\n\n", "no header row; the first line must name the columns, e.g. device_id,kind,unit_id"),
    ],
)
def test_unusable_csv_is_refused_as_a_whole(text: str, message: str) -> None:
    with pytest.raises(UnusableImport) as e:
        parse_import(text, "csv")
    assert str(e.value) == message


def test_json_lines_rows() -> None:
    lines = [
        json.dumps({"device_id": "d1", "kind": "smoke", "heartbeat_s": 3600, "thresholds": {"smoke_temp_c": 60}}),
        "",
        "{broken",
        json.dumps(["d2", "smoke"]),
        json.dumps({"device_id": "d3", "kind": "gas", "colour": "red"}),
        json.dumps({"device_id": "d4", "kind": "gas", "heartbeat_s": True}),
        json.dumps({"device_id": "d5", "kind": "water", "location": 5}),
        json.dumps({"device_id": 6, "kind": "water"}),
    ]
    text = "\n".join(lines)
    assert errors(text, "ndjson") == [
        (3, None, "not valid JSON: Expecting property name enclosed in double quotes"),
        (4, None, "not a JSON object"),
        (5, "d3", "unknown field 'colour'"),
        (6, "d4", "heartbeat_s must be a whole number of seconds from 1 to 2592000, got True"),
        (7, "d5", "location must be an object or a text"),
        (8, None, "device_id must be a string"),
    ]
    assert [(line, s) for line, s in parse_import(text, "ndjson").specs] == [
        (1, DeviceSpec("d1", Kind.smoke, heartbeat_s=3600, thresholds={"smoke_temp_c": 60.0}))
    ]


def test_region_paths_and_their_ancestors() -> None:
    assert region_path(" 江西省 / 赣州市//章贡区/南外街道/ ") == "江西省/赣州市/章贡区/南外街道"
    assert region_path(None) == ""
    assert region_chain("江西省/赣州市/章贡区") == [
        ("江西省", "江西省", None, 1),
        ("江西省/赣州市", "赣州市", "江西省", 2),
        ("江西省/赣州市/章贡区", "章贡区", "江西省/赣州市", 3),
    ]
    assert region_chain("") == []
    with pytest.raises(InvalidSpec, match="has 7 levels; at most 6"):
        region_path("a/b/c/d/e/f/g")


def test_unit_spec_generates_an_id_and_normalises_the_region() -> None:
    a = UnitSpec.parse({"name": "南外街道农贸市场", "region": "江西省/赣州市/"})
    b = UnitSpec.parse({"name": "南外街道农贸市场"})
    assert a.unit_id != b.unit_id and re.fullmatch(r"U[0-9a-f]{16}", a.unit_id)
    assert (a.region, a.industry, a.contacts) == ("江西省/赣州市", "other", [])
    with pytest.raises(InvalidSpec, match=r"^name is missing$"):
        UnitSpec.parse({"unit_id": "U1"})
    with pytest.raises(InvalidSpec, match=r"^contacts must be a list of objects$"):
        UnitSpec.parse({"name": "x", "contacts": ["13800000000"]})


# --- property: what is accepted is exactly what a plain per-row reference accepts -------------
ID_CHARS = "ab9_.:-! é"
KINDS = [k.name for k in Kind] + ["Smoke", " gas ", "boiler", ""]


def reference_accepts(rows: list[tuple[str, str]]) -> list[tuple[int, str]]:
    """(line, device_id) of rows a careful operator would accept, written plainly."""
    accepted: list[tuple[int, str]] = []
    seen: set[str] = set()
    for i, (device_id, kind) in enumerate(rows):
        d = device_id.strip()
        allowed = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-"
        if not d or len(d) > 64 or any(c not in allowed for c in d):
            continue
        if kind.strip().lower() not in {k.name for k in Kind}:
            continue
        if kind.strip().lower() == "charger":  # needs thresholds.port_rated_a, which these rows lack
            continue
        if d in seen:
            continue
        seen.add(d)
        accepted.append((i + 2, d))
    return accepted


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(ID_CHARS, max_size=6), st.sampled_from(KINDS)), max_size=30))
def test_accepted_rows_match_the_scalar_reference(rows: list[tuple[str, str]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["device_id", "kind"])
    writer.writerows(rows)
    parsed = parse_import(buf.getvalue(), "csv")
    blank = {i + 2 for i, (d, k) in enumerate(rows) if not d.strip() and not k.strip()}
    assert [(line, s.device_id) for line, s in parsed.specs] == reference_accepts(rows)
    assert len(parsed.specs) + len(parsed.errors) + len(blank) == len(rows)

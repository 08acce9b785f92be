"""Device profiles: loading (shipped and operator), property mapping, event rules, selection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devices.kinds import Event, Kind
from ingest.codecs.errors import DecodeError
from ingest.codecs.profiles import REJECTED, SHIPPED_DIR, Profile, ProfileError, ProfileRegistry, read_profiles

DOCS = Path(__file__).resolve().parents[2] / "docs" / "profiles.md"


def make(**fields: Any) -> Profile:
    base: dict[str, Any] = {"name": "t", "description": "test", "kind": "electrical"}
    return Profile.model_validate({**base, **fields})


def test_shipped_profiles_load_and_are_documented() -> None:
    registry = ProfileRegistry.load()
    names = {p.name for p in registry}
    assert {"ctwing-smoke", "ctwing-gas", "ctwing-electrical-fire"} <= names
    assert len(list(SHIPPED_DIR.glob("*.json"))) == len(registry)
    docs = DOCS.read_text(encoding="utf-8")
    for p in registry:
        assert len(p.description) > 100, p.name
        assert f"`{p.name}`" in docs, f"docs/profiles.md does not describe {p.name}"
        for prop in p.known_properties:
            assert f"`{prop}`" in docs, f"docs/profiles.md does not name {p.name}'s property {prop}"


def test_numbers_are_scaled_offset_then_negated() -> None:
    p = make(
        properties={
            "rsrp": {"metric": "rsrp_dbm", "negate": True},
            "power_w": {"metric": "power_kw", "scale": 0.001},
            "raw_temp": {"metric": "cable_temp_c", "scale": 0.1, "offset": -40, "index": 0},
        }
    )
    m = p.apply({"rsrp": "97", "power_w": 1500, "raw_temp": 650})
    assert m.metrics == {"rsrp_dbm": -97.0, "power_kw": 1.5, "cable_temp_c": [25.0]}
    assert p.apply({"rsrp": -101.5}).metrics == {"rsrp_dbm": -101.5}  # already signed stays negative


def test_list_metric_from_indexed_properties_keeps_order() -> None:
    p = make(properties={f"t{i}": {"metric": "cable_temp_c", "index": i} for i in range(4)})
    assert p.apply({"t3": 4, "t0": 1, "t2": 3}).metrics == {"cable_temp_c": [1.0, 3.0, 4.0]}
    whole = make(properties={"temps": {"metric": "cable_temp_c", "scale": 0.1}})
    assert whole.apply({"temps": [215, 220]}).metrics == {"cable_temp_c": [21.5, 22.0]}


def test_a_bare_number_for_a_list_metric_is_a_list_of_one() -> None:
    p = make(properties={"leak": {"metric": "residual_current_ma"}, "v": {"metric": "voltage_v", "scale": 0.1}})
    assert p.apply({"leak": 350, "v": "2301"}).metrics == {"residual_current_ma": [350.0], "voltage_v": [230.1]}


def test_clip_brings_a_number_into_the_metric_s_range() -> None:
    p = make(properties={"pv": {"metric": "pyrolysis_index", "scale": 0.2, "clip": True},
                         "raw": {"metric": "pyrolysis_index"}})
    assert [p.apply({"pv": v}).metrics for v in (-5, 0, 250, 500, 9999)] == [
        {"pyrolysis_index": x} for x in (0.0, 0.0, 50.0, 100.0, 100.0)
    ]
    unclipped = p.apply({"raw": 101})
    assert unclipped.metrics == {} and "between 0 and 100" in unclipped.extra[REJECTED]["raw"]


def test_fixed_metrics_are_on_every_reading_unless_the_message_says_otherwise() -> None:
    p = make(kind="gas", fixed={"gas_type": "co"}, properties={"ppm": {"metric": "co_ppm"}})
    assert p.apply({}).metrics == {"gas_type": "co"}
    assert p.apply({"ppm": 35, "gas_type": "methane"}).metrics == {"gas_type": "methane", "co_ppm": 35.0}


def test_codes_hex_text_and_yes_no() -> None:
    p = make(
        kind="gas",
        properties={
            "medium": {"metric": "gas_type", "map": {"0": "methane", "1": "lpg"}},
            "cell": {"metric": "cell_id", "hex": True},
            "cell_text": {"metric": "cell_id"},
            "mains": {"metric": "mains_ok"},
        },
    )
    assert p.apply({"medium": "1", "cell": 1715004, "mains": 1}).metrics == {
        "gas_type": "lpg",
        "cell_id": "1A2B3C",
        "mains_ok": True,
    }
    assert p.apply({"medium": 0.0, "cell": "0x001a2b3c", "mains": False}).metrics == {
        "gas_type": "methane",
        "cell_id": "1A2B3C",
        "mains_ok": False,
    }
    assert p.apply({"cell_text": 4711}).metrics == {"cell_id": "4711"}


def test_unmappable_values_are_kept_with_reasons_never_fatal() -> None:
    p = make(
        kind="smoke",
        properties={"bat": {"metric": "battery_pct"}, "coverage": {"metric": "ecl"}},
        events=[{"property": "alarm", "map": {"1": "alarm", "0": "report"}}],
    )
    m = p.apply({"alarm": 1, "bat": 180, "coverage": "high", "fw": "v2", "alarm_extra": {"a": [1]}})
    assert m.event is Event.alarm
    assert m.metrics == {}
    assert m.extra["fw"] == "v2" and m.extra["alarm_extra"] == {"a": [1]}
    assert m.extra["bat"] == 180 and m.extra["coverage"] == "high"
    assert "battery_pct must be between 0 and 100" in m.extra[REJECTED]["bat"]
    assert "not a finite number" in m.extra[REJECTED]["coverage"]
    unknown_code = p.apply({"alarm": 7})
    assert unknown_code.event is Event.report
    assert unknown_code.extra == {"alarm": 7, REJECTED: {"alarm": "code 7 is not in the profile's event rules"}}


def test_canonical_names_are_taken_as_metrics_and_never_become_extra_keys() -> None:
    p = make(kind="smoke", properties={"Battery_Level": {"metric": "battery_pct"}})
    m = p.apply({"pci": 301, "battery_pct": 50, "Battery_Level": 86, "ecl": 7})
    assert m.metrics == {"pci": 301, "battery_pct": 86.0}  # the profile's own mapping wins
    assert m.extra == {REJECTED: {"ecl": "metric ecl must be between 0 and 2, got 7"}}


def test_event_rules_by_tier_and_message_kind() -> None:
    p = make(
        properties={"breaker": {"metric": "breaker", "map": {"0": "closed", "1": "tripped"}}},
        events=[
            {"property": "alarm", "messages": ["event"], "map": {"0": "alarm_clear"}},
            {"property": "alarm", "map": {"0": "report", "1": {"event": "alarm", "extra": {"alarm_code": "leak"}}}},
            {"property": "fault", "map": {"8": {"event": "fault", "fault_code": "probe_open"}}},
            {"property": "breaker", "messages": ["event"], "map": {"0": "breaker_closed", "1": "breaker_tripped"}},
        ],
    )
    assert p.apply({"alarm": 0}).event is Event.report
    assert p.apply({"alarm": 0}, context="event").event is Event.alarm_clear
    # a raising event outranks a clearing one, whatever the rule order
    assert p.apply({"alarm": 0, "breaker": 1}, context="event").event is Event.breaker_tripped
    raised = p.apply({"alarm": 1, "breaker": 1}, context="event")
    assert (raised.event, raised.extra, raised.metrics) == (Event.alarm, {"alarm_code": "leak"}, {"breaker": "tripped"})
    fault = p.apply({"alarm": 0, "fault": "8"})
    assert (fault.event, fault.metrics) == (Event.fault, {"fault_code": "probe_open"})
    assert p.apply({"breaker": 1}).event is Event.report  # breaker rule only in event reports


def test_shipped_smoke_profile() -> None:
    p = ProfileRegistry.load().get("ctwing-smoke")
    assert p is not None and p.kind is Kind.smoke
    m = p.apply(
        {
            "Alarm_Status": 1,
            "Battery_Level": 86,
            "RSRP": 97,
            "SINR": 11,
            "PCI": 301,
            "ECL": 0,
            "Cell_ID": "1a2b3c",
            "Temperature": 31.5,
        }
    )
    assert m.event is Event.alarm
    assert m.metrics == {
        "battery_pct": 86.0,
        "rsrp_dbm": -97.0,
        "sinr_db": 11.0,
        "pci": 301,
        "ecl": 0,
        "cell_id": "1A2B3C",
        "temperature_c": 31.5,
    }
    assert p.apply({"Alarm_Status": 0}, context="event").event is Event.alarm_clear
    assert p.apply({"Alarm_Status": 0}).event is Event.report


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"kind": "fridge"}, "unknown kind"),
        ({"properties": {"x": {"metric": "smell"}}}, "not a canonical metric"),
        ({"properties": {"x": {"metric": "gas_lel_pct"}}}, "which a electrical device does not have"),
        ({"properties": {"x": {"metric": "power_kw", "index": 0}}}, "index is only for list metrics"),
        ({"properties": {"x": {"metric": "breaker", "map": {"1": "open"}}}}, "breaker must be one of"),
        ({"properties": {"x": {"metric": "power_kw", "sclae": 2}}}, "Extra inputs"),
        ({"events": [{"property": "a", "map": {"1": "explode"}}]}, "unknown event"),
        ({"events": [{"property": "a", "map": {"1": "alarm"}, "messages": ["push"]}]}, "data"),
        ({"name": "has space"}, "pattern"),
        ({"properties": {"x": {"metric": "breaker", "clip": True}}}, "clip is only for numeric metrics"),
        ({"fixed": {"gas_type": "co"}}, "fixed metric 'gas_type' is not one a electrical device has"),
        ({"fixed": {"pyrolysis_index": 120}}, "fixed metric pyrolysis_index must be between 0 and 100"),
        ({"events": [{"property": "a", "map": {"1": {"event": "alarm", "extra": {"battery_pct": 1}}}}]}, "reserved"),
        (
            {"events": [{"property": "a", "map": {"1": {"event": "fault", "fault_code": "a\u0000"}}}]},
            "fault_code must be",
        ),
    ],
)
def test_bad_profiles_are_refused(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        make(**fields)


def test_operator_directory_adds_and_overrides(tmp_path: Path) -> None:
    shipped = json.loads((SHIPPED_DIR / "ctwing-smoke.json").read_text(encoding="utf-8"))
    shipped["platform"]["ctwing"]["product_ids"] = ["15017088"]
    (tmp_path / "override.json").write_text(json.dumps(shipped), encoding="utf-8")
    water = {
        "name": "acme-water",
        "description": "pressure",
        "kind": "water",
        "properties": {"p_kpa": {"metric": "pressure_mpa", "scale": 0.001}},
    }
    (tmp_path / "water.json").write_text(json.dumps(water), encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a profile", encoding="utf-8")
    registry = ProfileRegistry.load(tmp_path)
    assert len(registry) == len(ProfileRegistry.load()) + 1
    smoke = registry.get("ctwing-smoke")
    assert smoke is not None and smoke.platform["ctwing"].product_ids == ["15017088"]
    water_profile = registry.get("acme-water")
    assert water_profile is not None and water_profile.apply({"p_kpa": 350}).metrics == {"pressure_mpa": 0.35}


def test_bad_operator_files_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text('{"name": "x", "kind": "smoke"}', encoding="utf-8")
    with pytest.raises(ProfileError, match=r"broken\.json: description: Field required"):
        read_profiles(tmp_path)
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ProfileError, match=r"broken\.json"):
        read_profiles(tmp_path)
    with pytest.raises(ProfileError, match="does not exist"):
        ProfileRegistry.load(tmp_path / "missing")


def test_selection() -> None:
    a = make(
        name="a",
        kind="smoke",
        platform={"ctwing": {"product_ids": ["111"]}},
        properties={"x": {"metric": "battery_pct"}},
    )
    b = make(
        name="b",
        kind="gas",
        platform={"ctwing": {}, "onenet": {}},
        properties={"x": {"metric": "battery_pct"}, "y": {"metric": "gas_lel_pct"}},
    )
    c = make(name="c", kind="smoke", platform={"onenet": {}}, properties={"x": {"metric": "battery_pct"}})
    registry = ProfileRegistry([a, b, c])
    assert registry.select("ctwing", name="c", product_id="111", props={}) is c  # the configured name wins
    assert registry.select("ctwing", name=None, product_id="111", props={"y": 1}) is a
    assert registry.select("ctwing", name=None, product_id="999", props={"x": 1, "y": 2}) is b
    with pytest.raises(DecodeError, match="profiles b and a fit equally"):
        registry.select("ctwing", name=None, product_id=None, props={"x": 1})
    with pytest.raises(DecodeError, match="no onenet device profile knows any of the properties q"):
        registry.select("onenet", name=None, product_id=None, props={"q": 1})
    with pytest.raises(DecodeError, match="'zzz', which is not loaded"):
        registry.select("onenet", name="zzz", product_id=None, props={"x": 1})

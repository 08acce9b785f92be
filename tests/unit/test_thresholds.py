"""Thresholds in layers (devices.thresholds, CONTRACT §10): device over profile over unit over default."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from devices.catalogue import THRESHOLD_ALIASES, THRESHOLDS
from devices.fleet import Fleet
from devices.kinds import Kind
from devices.thresholds import ThresholdLayers, effective, fleet_row, parse, shown
from ingest.codecs.profiles import Profile, ProfileRegistry

NAMES = list(THRESHOLDS)
#: a name or one of its aliases, so that layers spell the same threshold differently
SPELLINGS = NAMES + list(THRESHOLD_ALIASES)
values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda v: float(round(v, 3)))
layer = st.dictionaries(st.sampled_from(SPELLINGS), values, max_size=8)


def canonical(spelled: dict[str, float]) -> dict[str, float]:
    return {THRESHOLD_ALIASES.get(k, k): v for k, v in spelled.items()}


@settings(max_examples=300, deadline=None)
@given(device=layer, profile=layer, unit=layer)
def test_each_threshold_comes_from_the_highest_layer_that_sets_it(device, profile, unit) -> None:
    own, prof, un = canonical(device), canonical(profile), canonical(unit)
    merged = effective(device, profile, unit)
    assert set(merged) == set(own) | set(prof) | set(un)
    for name in NAMES:
        for source in (own, prof, un):
            if name in source:
                assert merged[name] == source[name]
                break
    row = fleet_row(merged)
    assert list(row) == NAMES
    assert all(math.isnan(row[n]) == (n not in merged) for n in NAMES)
    view = shown(merged)
    for name, spec in THRESHOLDS.items():
        expected = merged.get(name, None if math.isnan(spec.default) else spec.default)
        assert view[name] == expected


def test_device_over_profile_over_unit_over_default() -> None:
    unit = {"pressure_mpa_min": 0.2, "level_low_m": 1.5, "tilt_max_deg": 20}
    profile = {"pressure_low_mpa": 0.12, "level_low_m": 2.0}
    device = {"level_low_m": 3.0}
    merged = effective(device, profile, unit)
    assert merged == {"pressure_low_mpa": 0.12, "level_low_m": 3.0, "tilt_max_deg": 20}
    view = shown(merged)
    assert view["pressure_drop_mpa"] == THRESHOLDS["pressure_drop_mpa"].default  # no layer: the default
    assert view["pressure_high_mpa"] is None  # no layer and no default: the rule is off
    assert effective({}, None, {"pressure_mpa_min": 0.2}) == {"pressure_low_mpa": 0.2}  # the unit's alias


@pytest.mark.parametrize(("raw", "reason"), [
    ({"nope": 1}, "unknown threshold 'nope'"),
    ({"pressure_low_mpa": True}, "threshold pressure_low_mpa must be a finite number"),
    ({"pressure_low_mpa": "0.1"}, "threshold pressure_low_mpa must be a finite number"),
    ({"pressure_mpa_min": math.inf}, "threshold pressure_low_mpa must be a finite number"),
    ([0.1], "thresholds must be an object"),
])
def test_parse_refuses_with_the_reason(raw, reason) -> None:
    with pytest.raises(ValueError, match=reason):
        parse(raw)


def test_parse_normalises_aliases() -> None:
    assert parse({"pressure_mpa_min": 0.1, "tilt_max_deg": 10}) == {"pressure_low_mpa": 0.1, "tilt_max_deg": 10.0}
    assert parse(None) == {}


def _fleet(*devices: tuple[str, str | None]) -> Fleet:
    fleet = Fleet()
    for device_id, unit_id in devices:
        fleet.upsert(device_id, Kind.water, unit_id=unit_id)
    return fleet


def test_layers_set_the_fleet_row_and_a_unit_change_is_reported() -> None:
    layers = ThresholdLayers({"hydrant-x": {"pressure_mpa_min": 0.12}, "bare": {}})
    assert layers.profiles == {"hydrant-x": {"pressure_low_mpa": 0.12}}
    assert layers.set_unit("U1", {"pressure_low_mpa": 0.2}) is True
    assert layers.set_unit("U1", {"pressure_mpa_min": 0.2}) is False  # the same threshold, spelled otherwise
    assert layers.layered(None, "U1") and layers.layered("hydrant-x", None) and not layers.layered("bare", "U2")
    fleet = _fleet(("w1", "U1"), ("w2", "U1"), ("w3", "U1"), ("w4", None))
    layers.apply(fleet, "w1", {}, None, "U1")
    layers.apply(fleet, "w2", {}, "hydrant-x", "U1")
    layers.apply(fleet, "w3", {"pressure_low_mpa": 0.03}, "hydrant-x", "U1")
    layers.apply(fleet, "w4", {}, None, None)
    layers.apply(fleet, "unknown", {"pressure_low_mpa": 1}, None, "U1")  # not in the fleet: nothing
    column = fleet.thresholds["pressure_low_mpa"]
    assert column[:3].tolist() == pytest.approx([0.2, 0.12, 0.03])
    assert math.isnan(column[3]) and fleet.overrides["pressure_low_mpa"] == 3
    assert layers.set_unit("U1", {}) is True and "U1" not in layers.units
    layers.apply(fleet, "w1", {}, None, "U1")  # the unit's value is gone: back to the default
    assert math.isnan(column[0]) and fleet.overrides["pressure_low_mpa"] == 2


def test_profile_thresholds_are_validated_and_listed() -> None:
    base = {"name": "p1", "description": "d", "kind": "water"}
    profile = Profile.model_validate({**base, "thresholds": {"pressure_mpa_min": 0.1}})
    assert profile.thresholds == {"pressure_low_mpa": 0.1}
    with pytest.raises(ValidationError, match="unknown threshold 'nope'"):
        Profile.model_validate({**base, "thresholds": {"nope": 1}})
    registry = ProfileRegistry([profile, Profile.model_validate({**base, "name": "p2"})])
    assert registry.thresholds() == {"p1": {"pressure_low_mpa": 0.1}}
    assert ProfileRegistry.load().thresholds() == {}  # the shipped profiles set none (docs/profiles.md)

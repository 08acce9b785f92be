"""The correlation core's fast paths agree with the plain scalar reference where the random
fleets of test_core_reference seldom go: an override of every per-device threshold, busy
detectors with several readings per batch, unit windows searched by sorting instead of by
comparing all pairs, and rows outside the fleet."""

from __future__ import annotations

from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.config import RuleConfig
from alerting.core import correlation
from devices.fleet import THRESHOLD_NAMES
from tests.unit.test_core_reference import agree, batches, fleet_specs

#: Overrides near the values test_core_reference's readings carry, for every threshold name.
ALL_OVERRIDES = {
    "smoke_temp_c": [30.0, 50.0], "smoke_rise_c_per_min": [0.5, 4.0], "gas_lel_pct": [5.0],
    "gas_lel_critical_pct": [9.0], "residual_current_ma": [99.0, 200.0], "cable_temp_c": [35.0, 60.0],
    "cable_rise_c_per_min": [0.5, 2.0], "arc_faults": [1.0, 13.0], "voltage_v_max": [221.0, 250.0],
    "pressure_low_mpa": [0.1, 0.31], "battery_pct_min": [50.0, 85.0],
    "pressure_high_mpa": [0.29, 1.2], "pressure_drop_mpa": [0.02, 0.2], "level_low_m": [0.6, 2.0],
    "flow_open_m3h": [0.5, 20.0], "tilt_max_deg": [10.0], "port_temp_c": [40.0, 60.0], "port_rise_c_per_min": [0.5],
    "port_rated_a": [10.0, 16.0], "leakage_warn_ma": [3.0], "leakage_critical_ma": [14.9, 20.0],
    "pyrolysis_major": [30.0, 60.0], "pyrolysis_critical": [50.0, 75.0], "co_major_ppm": [40.0, 100.0],
    "co_critical_ppm": [99.0, 200.0],
}


def test_overrides_cover_every_threshold() -> None:
    assert set(ALL_OVERRIDES) == set(THRESHOLD_NAMES)


@st.composite
def overridden_specs(draw: st.DrawFn) -> dict:
    """test_core_reference's fleets, each device with overrides drawn from every threshold name."""
    spec = draw(fleet_specs())
    names = st.lists(st.sampled_from(sorted(ALL_OVERRIDES)), max_size=4, unique=True)
    spec["devices"] = [
        (kind, unit, maintenance, muted_s, {name: draw(st.sampled_from(ALL_OVERRIDES[name])) for name in draw(names)})
        for kind, unit, maintenance, muted_s, _ in spec["devices"]
    ]
    return spec


def configs() -> st.SearchStrategy[RuleConfig]:
    return st.builds(RuleConfig, rise_min_span_s=st.sampled_from([15.0, 1.0]), mute_s=st.sampled_from([600, 30]),
                     flapping_cycles=st.sampled_from([2, 3]), transient_s=st.sampled_from([10, 60]))


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_every_threshold_override_agrees_with_the_reference(data: st.DataObject) -> None:
    spec = data.draw(overridden_specs())
    agree(spec, data.draw(batches([d[0] for d in spec["devices"]])), data.draw(configs()))


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_sorted_unit_windows_agree_with_the_reference(data: st.DataObject) -> None:
    spec = data.draw(fleet_specs())
    plan = data.draw(batches([d[0] for d in spec["devices"]]))
    with mock.patch.object(correlation, "DENSE_PAIRS_MAX", 0):
        agree(spec, plan, data.draw(configs()))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_rows_outside_the_fleet_change_nothing(data: st.DataObject) -> None:
    spec = data.draw(fleet_specs())
    agree(spec, data.draw(batches([d[0] for d in spec["devices"]])), data.draw(configs()), strays=True)

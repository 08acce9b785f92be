"""The correlation core's fast paths agree with the plain scalar reference where the random
fleets of test_core_reference seldom go: an override of every per-device threshold, busy
detectors with several readings per batch, unit windows searched by sorting instead of by
comparing all pairs, and rows outside the fleet."""

from __future__ import annotations

from unittest import mock

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.config import RuleConfig
from alerting.core import Correlator, correlation
from devices.fleet import FLAPPING
from devices.kinds import Event, Kind
from tests.unit.reference_rules import T0, ReferenceCorrelator, columns, decision_key, reading
from tests.unit.test_core_reference import batches, build, fleet_specs

#: Overrides near the values test_core_reference's readings carry, for every threshold name.
ALL_OVERRIDES = {
    "smoke_temp_c": [30.0, 50.0], "smoke_rise_c_per_min": [0.5, 4.0], "gas_lel_pct": [5.0],
    "gas_lel_critical_pct": [9.0], "residual_current_ma": [99.0, 200.0], "cable_temp_c": [35.0, 60.0],
    "cable_rise_c_per_min": [0.5, 2.0], "arc_faults": [1.0, 13.0], "voltage_v_max": [221.0, 250.0],
    "pressure_mpa_min": [0.1, 0.31], "battery_pct_min": [50.0, 85.0],
}


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


def agree(spec: dict, plan: list, config: RuleConfig, strays: bool = False) -> None:
    """Run the core and the reference over the same batches; with `strays`, every batch also
    carries alarming readings of devices that are not in the fleet (ignored)."""
    kinds = [d[0] for d in spec["devices"]]
    fleet_a, fleet_b = build(spec), build(spec)
    core, ref = Correlator(config), ReferenceCorrelator(config)
    now = T0
    for step_s, rows in plan:
        now += step_s * 1000
        readings = [reading(f"d{d}", kinds[d], ev, now - 300_000 + dt * 1000, code, **m) for d, ev, dt, code, m in rows]
        if strays:
            readings += [
                reading("ghost-smoke", Kind.smoke, Event.alarm, now - 1000, temperature_c=90.0, battery_pct=5.0),
                reading("ghost-meter", Kind.electrical, Event.alarm_clear, now, cable_temp_c=[95.0]),
            ]
        got = sorted(map(decision_key, core.evaluate(columns(fleet_a, readings), fleet_a, now)))
        want = sorted(map(decision_key, ref.evaluate(columns(fleet_b, readings), fleet_b, now)))
        assert got == want
        assert np.array_equal(fleet_a.flags & FLAPPING, fleet_b.flags & FLAPPING)
        fleet_a.apply(columns(fleet_a, readings))
        fleet_b.apply(columns(fleet_b, readings))


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

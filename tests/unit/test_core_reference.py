"""The vectorized correlation core agrees with the plain scalar reference (tests/unit/reference_rules.py)
on random fleets and consecutive random batches, and on random offline sweeps."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.config import RuleConfig
from alerting.core import Correlator
from devices.fleet import FLAPPING, Fleet
from devices.kinds import Event, Kind
from tests.unit.reference_rules import T0, ReferenceCorrelator, columns, decision_key, reading

NAN = math.nan
METRICS: dict[Kind, dict[str, list[float]]] = {
    Kind.smoke: {"temperature_c": [NAN, 20, 30, 35, 50, 56.9, 57, 70], "battery_pct": [NAN, 10, 19.9, 20, 80]},
    Kind.gas: {"gas_lel_pct": [NAN, 0, 9.9, 10, 24.9, 25, 40], "battery_pct": [NAN, 15, 90],
               "co_ppm": [NAN, NAN, NAN, 0, 49, 50, 100, 299, 300]},
    Kind.electrical: {"residual_current_ma": [NAN, 100, 299, 300, 500], "cable_temp_c": [NAN, 30, 40, 50, 69.9, 70, 90],
                      "arc_faults": [NAN, 0, 13, 14], "voltage_v": [NAN, 220, 263.9, 264],
                      "pyrolysis_index": [NAN, NAN, 10, 30, 49, 50, 70, 79.9, 80]},
    Kind.water: {"pressure_mpa": [NAN, 0.3, 0.25, 0.2, 0.05, 0.049, 0.0, 1.3], "battery_pct": [NAN, 19, 50],
                 "level_m": [NAN, 0.5, 2.0], "flow_m3h": [NAN, 0, 1.0, 1.01, 30], "tilt_deg": [NAN, 0, 14.9, 15]},
    Kind.uitd: {"pressure_mpa": [NAN, NAN, 0.0, 0.3], "level_m": [NAN, NAN, 0.5]},
    Kind.charger: {"port_temp_c": [NAN, 30, 40, 45, 69.9, 70], "port_current_a": [NAN, 5, 16, 16.1, 20],
                   "residual_current_ma": [NAN, 3, 14.9, 15, 30]},
}
LIST_METRICS = {"residual_current_ma", "cable_temp_c", "voltage_v", "port_temp_c", "port_current_a"}
#: Extra metrics of a reading (not numeric columns): a gas detector's type.
GAS_TYPES = [None, None, None, "methane", "co"]
#: Device-reported alarm codes of electrical readings (None: none; "E42": a vendor code not known).
ALARM_CODES = [None, None, None, "residual_current", "leakage", "over_temperature", "overload", "short_circuit",
               "overvoltage", "undervoltage", "arc_fault", "E42", "pyrolysis", "mains_and_backup", "co"]
EVENTS = [Event.heartbeat, Event.report, Event.report, Event.alarm, Event.alarm, Event.alarm, Event.alarm_clear,
          Event.alarm_clear, Event.test, Event.fault, Event.fault_clear, Event.tamper, Event.tamper_clear,
          Event.low_battery, Event.mute, Event.power_fail, Event.power_restore, Event.supervisory,
          Event.supervisory_clear, Event.breaker_tripped, Event.breaker_closed, Event.hydrant_open, Event.hydrant_close,
          Event.impact, Event.overtemp, Event.overcurrent, Event.leakage]
OVERRIDES = {"smoke_temp_c": [50.0], "gas_lel_pct": [5.0], "gas_lel_critical_pct": [20.0],
             "residual_current_ma": [200.0], "cable_temp_c": [60.0], "battery_pct_min": [30.0],
             "smoke_rise_c_per_min": [4.0], "pressure_high_mpa": [1.2], "level_low_m": [1.0],
             "port_rated_a": [16.0], "co_major_ppm": [40.0], "pyrolysis_major": [30.0]}


@st.composite
def fleet_specs(draw: st.DrawFn) -> dict:
    devices = draw(st.lists(st.tuples(
        st.sampled_from([Kind.smoke, Kind.smoke, Kind.gas, Kind.electrical, Kind.water, Kind.uitd, Kind.charger]),
        st.sampled_from([None, "u0", "u1", "u1", "u2"]),
        st.booleans() if draw(st.booleans()) else st.just(False),  # maintenance
        st.sampled_from([0, 0, 0, 60, 400]),  # muted for so many seconds after T0
        st.dictionaries(st.sampled_from(sorted(OVERRIDES)), st.floats(1, 100).map(lambda x: round(x, 1)), max_size=2),
    ), min_size=2, max_size=9))
    return {"devices": devices, "unit_maintenance": draw(st.sampled_from([None, "u0", "u2"])),
            "hydrants": draw(st.lists(st.booleans(), min_size=len(devices), max_size=len(devices))),
            "tripped_s": draw(st.lists(st.sampled_from([None, None, -150, -100, 0]), min_size=len(devices),
                                       max_size=len(devices)))}


def build(spec: dict) -> Fleet:
    fleet = Fleet(capacity=4)
    for i, (kind, unit, maintenance, muted_s, overrides) in enumerate(spec["devices"]):
        s = fleet.upsert(f"d{i}", kind, unit_id=unit, maintenance=maintenance)
        fleet.mute_until_ms[s] = T0 + muted_s * 1000 if muted_s else 0
        fleet.set_thresholds(s, overrides)
        if spec.get("hydrants", [False] * (i + 1))[i]:
            fleet.set_hydrant(s, True)
        tripped = spec.get("tripped_s", [None] * (i + 1))[i]
        if tripped is not None:  # a breaker_trip command so many seconds after T0
            fleet.note_command(s, "breaker_trip", T0 + tripped * 1000)
    for unit in ("u0", "u1", "u2"):
        fleet.set_unit(unit)
    if spec["unit_maintenance"]:
        fleet.set_unit(spec["unit_maintenance"], maintenance=True)
    return fleet


@st.composite
def batches(draw: st.DrawFn, kinds: list[Kind]) -> list:
    out = []
    for _ in range(draw(st.integers(1, 4))):
        rows = []
        for _ in range(draw(st.integers(0, 20))):
            d = draw(st.one_of(st.just(0), st.just(1), st.integers(0, len(kinds) - 1)))  # busy detectors flap
            metrics: dict[str, object] = {}
            for name, choices in METRICS[kinds[d]].items():
                v = draw(st.sampled_from(choices))
                if v == v:
                    metrics[name] = [v] if name in LIST_METRICS else v
            code = draw(st.sampled_from(ALARM_CODES)) if kinds[d] in (Kind.electrical, Kind.gas, Kind.uitd) else None
            gas_type = draw(st.sampled_from(GAS_TYPES)) if kinds[d] == Kind.gas else None
            if gas_type:
                metrics["gas_type"] = gas_type
            rows.append((d, draw(st.sampled_from(EVENTS)), draw(st.integers(0, 40)) * 5, code, metrics))
        out.append((draw(st.integers(0, 5)) * 130, rows))  # (service time step s, rows with device time offsets s)
    return out


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


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_core_and_reference_agree_across_batches(data: st.DataObject) -> None:
    spec = data.draw(fleet_specs())
    kinds = [d[0] for d in spec["devices"]]
    plan = data.draw(batches(kinds))
    config = RuleConfig(rise_min_span_s=data.draw(st.sampled_from([15.0, 1.0])),
                        mute_s=data.draw(st.sampled_from([600, 30])),
                        flapping_cycles=data.draw(st.sampled_from([2, 3])),
                        transient_s=data.draw(st.sampled_from([10, 60])),
                        co_major_hold_s=data.draw(st.sampled_from([3600, 120])))
    agree(spec, plan, config)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_offline_sweeps_agree(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 40))
    cells = data.draw(st.lists(st.sampled_from([None, "c0", "c1"]), min_size=n, max_size=n))
    kinds = data.draw(st.lists(st.sampled_from([Kind.smoke, Kind.uitd, Kind.gas]), min_size=n, max_size=n))
    config = RuleConfig(outage_devices=data.draw(st.integers(2, 6)), outage_window_s=60)
    fleets = []
    for _ in range(2):
        fleet = Fleet(capacity=4)
        for i in range(n):
            fleet.upsert(f"d{i}", kinds[i], cell_id=cells[i], unit_id="u0")
        fleets.append(fleet)
    core, ref = Correlator(config), ReferenceCorrelator(config)
    now = T0
    for _ in range(data.draw(st.integers(1, 5))):
        now += 60_000
        gone = data.draw(st.lists(st.integers(0, n - 1), max_size=n, unique=True))
        back = data.draw(st.lists(st.integers(0, n - 1), max_size=n, unique=True))
        since = data.draw(st.lists(st.integers(0, 90), min_size=len(gone), max_size=len(gone)))
        for fleet in fleets:  # what Fleet.sweep / Fleet.apply would leave behind
            for s in back:
                fleet.last_seen_ms[s], fleet.offline_since_ms[s] = now, 0
            for s, ago in zip(gone, since):
                fleet.offline_since_ms[s] = now - ago * 1000
        back_slots = np.array(back, np.int32)
        gone_slots = np.array(gone, np.int32)
        got = core.came_online(back_slots, fleets[0], now) + core.sweep(gone_slots, fleets[0], now)
        want = ref.came_online(back, fleets[1], now) + ref.sweep(gone, fleets[1], now)
        assert sorted(map(decision_key, got)) == sorted(map(decision_key, want))

"""The v2 device classes (CONTRACT §10) of the vectorized core agree with the scalar reference on
fleets of water devices, hydrants, chargers, CO and pyrolysis detectors and panel components, with
long series of readings (held conditions, drops, rises) and the v2 events."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.config import RuleConfig
from devices.kinds import Event, Kind
from tests.unit.test_core_reference import GAS_TYPES, LIST_METRICS, METRICS, agree

KINDS = [Kind.water, Kind.water, Kind.charger, Kind.charger, Kind.gas, Kind.electrical, Kind.uitd, Kind.smoke]
EVENTS = [Event.report, Event.report, Event.report, Event.heartbeat, Event.alarm, Event.alarm_clear, Event.test,
          Event.power_fail, Event.power_restore, Event.supervisory, Event.supervisory_clear, Event.breaker_tripped,
          Event.breaker_closed, Event.hydrant_open, Event.hydrant_close, Event.impact, Event.overtemp,
          Event.overcurrent, Event.leakage]
CODES = {Kind.electrical: [None, "pyrolysis", "residual_current"], Kind.gas: [None, "co"],
         Kind.uitd: [None, "mains_and_backup"]}
OVERRIDES = {"pressure_high_mpa": [0.29, 1.2], "level_low_m": [1.0], "port_rated_a": [16.0],
             "co_major_ppm": [40.0], "pressure_drop_mpa": [0.02]}


@st.composite
def v2_specs(draw: st.DrawFn) -> dict:
    devices = draw(st.lists(st.tuples(
        st.sampled_from(KINDS),
        st.sampled_from([None, "u0", "u1"]),
        st.just(False),
        st.sampled_from([0, 0, 0, 60]),
        st.dictionaries(st.sampled_from(sorted(OVERRIDES)), st.sampled_from([0.29, 1.0, 16.0, 40.0]), max_size=2),
    ), min_size=2, max_size=6))
    n = len(devices)
    return {"devices": devices, "unit_maintenance": None,
            "hydrants": draw(st.lists(st.booleans(), min_size=n, max_size=n)),
            "tripped_s": draw(st.lists(st.sampled_from([None, -100, 200]), min_size=n, max_size=n))}


@st.composite
def series(draw: st.DrawFn, kinds: list[Kind]) -> list:
    """Batches of readings of few devices, device time climbing, values mostly from each metric's list."""
    out = []
    for _ in range(draw(st.integers(1, 6))):
        rows = []
        for _ in range(draw(st.integers(1, 12))):
            d = draw(st.integers(0, len(kinds) - 1))
            kind = kinds[d]
            metrics: dict[str, object] = {}
            for name, choices in METRICS[kind].items():
                v = draw(st.sampled_from(choices))
                if v == v:
                    metrics[name] = [v] if name in LIST_METRICS else v
            if kind == Kind.gas and (g := draw(st.sampled_from(GAS_TYPES))):
                metrics["gas_type"] = g
            code = draw(st.sampled_from(CODES.get(kind, [None])))
            rows.append((d, draw(st.sampled_from(EVENTS)), draw(st.integers(0, 60)) * 5, code, metrics))
        out.append((draw(st.sampled_from([10, 30, 60, 130, 400, 650])), rows))
    return out


@settings(max_examples=250, deadline=None)
@given(st.data())
def test_v2_classes_agree_with_the_reference(data: st.DataObject) -> None:
    spec = data.draw(v2_specs())
    plan = data.draw(series([d[0] for d in spec["devices"]]))
    config = RuleConfig(co_major_hold_s=data.draw(st.sampled_from([3600, 120, 0])),
                        co_short_hold_s=data.draw(st.sampled_from([600, 60])),
                        overcurrent_hold_s=data.draw(st.sampled_from([30, 0])),
                        rise_min_span_s=data.draw(st.sampled_from([15.0, 1.0])))
    agree(spec, plan, config)

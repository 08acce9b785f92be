"""Alarm episodes: transients (cleared within 10 s) and flapping detectors (3 cycles in 10 minutes)."""

from __future__ import annotations

import pytest

from alerting.config import RuleConfig
from alerting.core import Correlator
from alerting.model import Decision, Response
from devices.fleet import FLAPPING, Fleet
from devices.kinds import Kind
from tests.unit.reference_rules import T0, columns, reading


@pytest.fixture
def fleet() -> Fleet:
    fleet = Fleet(capacity=4)
    fleet.upsert("g1", Kind.gas, unit_id="u1")
    fleet.upsert("s1", Kind.smoke, unit_id="u1")
    return fleet


def feed(core: Correlator, fleet: Fleet, *readings) -> list[Decision]:
    batch = columns(fleet, list(readings))
    out = core.evaluate(batch, fleet, max(r.ts_ms for r in readings) + 1000)
    fleet.apply(batch)
    return out


def clear_of(decisions: list[Decision]) -> Decision:
    (d,) = [d for d in decisions if d.action == "clear"]
    return d


@pytest.mark.parametrize(("after_ms", "transient"), [(10_000, True), (10_001, False), (11_000, False)])
def test_an_alarm_cleared_within_10_s_is_a_transient(fleet: Fleet, after_ms: int, transient: bool) -> None:
    core = Correlator()
    feed(core, fleet, reading("s1", Kind.smoke, "alarm", T0))
    d = clear_of(feed(core, fleet, reading("s1", Kind.smoke, "alarm_clear", T0 + after_ms)))
    assert (d.key, d.type.name) == ("device:s1", "smoke")
    assert (d.rule, d.response) == (("transient", Response.none) if transient else ("alarm_clear", Response.verify))
    assert d.evidence[0]["alarm_started_ms"] == T0


def test_transient_measured_from_the_first_alarm_of_the_episode(fleet: Fleet) -> None:
    core = Correlator()
    got = feed(core, fleet, reading("s1", Kind.smoke, "alarm", T0), reading("s1", Kind.smoke, "alarm", T0 + 8000),
               reading("s1", Kind.smoke, "alarm_clear", T0 + 12_000))
    assert clear_of(got).rule == "alarm_clear"


def test_a_clear_without_an_open_alarm_is_plain(fleet: Fleet) -> None:
    assert clear_of(feed(Correlator(), fleet, reading("s1", Kind.smoke, "alarm_clear", T0))).rule == "alarm_clear"


def test_order_within_a_batch_is_device_time(fleet: Fleet) -> None:
    got = feed(
        Correlator(), fleet, reading("s1", Kind.smoke, "alarm_clear", T0 + 3000), reading("s1", Kind.smoke, "alarm", T0)
    )
    assert [(d.action, d.rule) for d in got] == [("raise", "smoke.single"), ("clear", "transient")]


def cycles(core: Correlator, fleet: Fleet, start: int, n: int, every_ms: int) -> None:
    for i in range(n):
        t = start + i * every_ms
        feed(core, fleet, reading("g1", Kind.gas, "alarm", t))
        feed(core, fleet, reading("g1", Kind.gas, "alarm_clear", t + 30_000))


def critical(core: Correlator, fleet: Fleet, ts: int) -> Decision:
    decisions = feed(core, fleet, reading("g1", Kind.gas, "report", ts, gas_lel_pct=40.0))
    (d,) = [d for d in decisions if d.key == "device:g1"]
    return d


def test_three_cycles_in_ten_minutes_mark_a_detector_flapping(fleet: Fleet) -> None:
    core = Correlator()
    slot = fleet.slot("g1")
    cycles(core, fleet, T0, 2, 120_000)
    assert not fleet.flags[slot] & FLAPPING
    cycles(core, fleet, T0 + 240_000, 1, 0)  # third cycle ends at 270 s
    assert fleet.flags[slot] & FLAPPING
    d = critical(core, fleet, T0 + 400_000)
    assert (d.severity.name, d.response, d.rule) == ("critical", Response.verify, "flapping")
    assert d.evidence[0]["gas_lel_pct"] == 40.0
    # until an operator clears the mark
    fleet.clear_flapping(slot)
    d = critical(core, fleet, T0 + 500_000)
    assert (d.response, d.rule) == (Response.immediate, "gas.lel_critical")


def test_three_cycles_spread_over_more_than_ten_minutes_are_not_flapping(fleet: Fleet) -> None:
    core = Correlator()
    cycles(core, fleet, T0, 3, 301_000)  # cycles end at 30 s, 331 s, 632 s
    assert not fleet.flags[fleet.slot("g1")] & FLAPPING
    assert critical(core, fleet, T0 + 700_000).response == Response.immediate


def test_flapping_within_one_batch_affects_its_later_alarms(fleet: Fleet) -> None:
    rows = []
    for i in range(3):
        rows += [
            reading("g1", Kind.gas, "alarm", T0 + i * 60_000),
            reading("g1", Kind.gas, "alarm_clear", T0 + i * 60_000 + 20_000),
        ]
    rows.append(reading("g1", Kind.gas, "report", T0 + 200_000, gas_lel_pct=30.0))
    got = feed(Correlator(), fleet, *rows)
    assert [d.rule for d in got if d.action == "raise"] == ["gas.alarm"] * 3 + ["flapping"]


def test_suppressed_alarms_do_not_cycle(fleet: Fleet) -> None:
    core = Correlator(RuleConfig(flapping_cycles=2))
    for i in range(3):
        feed(core, fleet, reading("g1", Kind.gas, "test", T0 + i * 60_000))
        d = clear_of(feed(core, fleet, reading("g1", Kind.gas, "alarm_clear", T0 + i * 60_000 + 5000)))
        assert d.rule == "alarm_clear"  # a test never opened an alarm episode
    assert not fleet.flags[fleet.slot("g1")] & FLAPPING

"""Device clocks ahead of the service are clamped at ingress (`ingest.clock_skew`); components
count as detectors only for uitd panels (`ingest.components`)."""

from __future__ import annotations

import copy

from hypothesis import given
from hypothesis import strategies as st

from devices.fleet import ClockSkewMark, Fleet
from devices.kinds import Event, Kind
from devices.reading import Reading
from ingest.clock_skew import CLOCK_SKEW, check_clocks
from ingest.codecs.values import MAX_TS_MS
from ingest.components import keep_components_of_panels

NOW = 1_795_341_600_000
TOL = 300_000

DEVICE_TIMES = st.one_of(
    st.sampled_from([0, NOW - 1, NOW, NOW + TOL, NOW + TOL + 1, NOW + 86_400_000, MAX_TS_MS]),
    st.integers(0, MAX_TS_MS),
)


def reading(ts: int, device: str = "D1", *, untimed: bool = False, seq: int | None = 1) -> Reading:
    return Reading(device, Kind.smoke, Event.alarm, ts, NOW, seq=seq, extra={"vendor_x": 1}, untimed=untimed)


@given(st.lists(st.tuples(DEVICE_TIMES, st.sampled_from(["D1", "D2"]), st.booleans()), max_size=12))
def test_no_reading_leaves_ahead_of_its_receive_time_by_more_than_the_tolerance(
    specs: list[tuple[int, str, bool]]
) -> None:
    readings = [reading(NOW if untimed else ts, device, untimed=untimed) for ts, device, untimed in specs]
    before = copy.deepcopy(readings)
    marks: dict[str, ClockSkewMark] = {}
    clamped = check_clocks(readings, TOL, marks)
    assert clamped == sum(not b.untimed and b.ts_ms > NOW + TOL for b in before)
    for b, r in zip(before, readings):
        assert r.ts_ms <= r.received_ms + TOL
        if not b.untimed and b.ts_ms > NOW + TOL:  # clamped: receive time, untimed, what the device said kept
            assert (r.ts_ms, r.untimed) == (NOW, True)
            assert r.extra == {"vendor_x": 1, CLOCK_SKEW: {"device_ts_ms": b.ts_ms, "offset_s": (b.ts_ms - NOW) / 1000}}
        else:
            assert r == b  # a plausible (or absent) device time is left alone
    for device in ("D1", "D2"):  # the device's mark follows its latest timed report
        timed = [b for b in before if b.device_id == device and not b.untimed]
        assert (device in marks) == bool(timed and timed[-1].ts_ms > NOW + TOL)


def test_a_mark_keeps_its_start_and_is_lifted_by_a_plausible_time() -> None:
    marks: dict[str, ClockSkewMark] = {}
    check_clocks([reading(MAX_TS_MS)], TOL, marks)
    assert marks["D1"].since_ms == NOW
    later = reading(NOW + 600_000)
    later.received_ms = NOW + 5_000
    check_clocks([later], TOL, marks)
    assert marks["D1"] == ClockSkewMark(NOW, 595.0)
    check_clocks([reading(NOW, untimed=True)], TOL, marks)  # no device time says nothing about the clock
    assert "D1" in marks
    check_clocks([reading(NOW + 1_000)], TOL, marks)
    assert marks == {}


def test_the_usual_batch_is_untouched() -> None:
    readings = [reading(NOW - i) for i in range(100)]
    assert check_clocks(readings, TOL, {}) == 0
    assert all(not r.untimed and CLOCK_SKEW not in r.extra for r in readings)


def test_components_make_detectors_only_for_uitd() -> None:
    smoke = Reading("S1", Kind.smoke, Event.alarm, NOW, NOW, component="1:1:7")
    panel = Reading("P1", Kind.uitd, Event.alarm, NOW, NOW, component="1:1:7")
    keep_components_of_panels([smoke, panel])
    assert (smoke.component, smoke.extra, smoke.detector_id) == (None, {"component": "1:1:7"}, "S1")
    assert (panel.component, panel.detector_id) == ("1:1:7", "P1:1:1:7")


def test_components_per_device_are_bounded() -> None:
    fleet = Fleet()
    parent = fleet.upsert("P1", Kind.uitd, unit_id="U1")
    fleet.upsert("P1:0", Kind.uitd, parent_id="P1")  # one registered already counts
    slots = [fleet.add_component(parent, f"P1:{i}", Kind.uitd, 3) for i in range(1, 4)]
    assert slots[:2] == [2, 3] and slots[2] == -1
    assert fleet.units.names[int(fleet.unit[slots[0]])] == "U1" and fleet.slot("P1:3") == -1

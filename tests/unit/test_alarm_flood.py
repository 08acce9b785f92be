"""Flood control's pure parts: the per-device rate that marks a detector flooding, and the
bookkeeping of coalesced repeats."""

from __future__ import annotations

import pytest

from alerting.flood import FloodWatch, Repeats
from alerting.model import AlarmType, Decision, Response, Severity


def raise_(device: str, ts: int = 0, key: str | None = None) -> Decision:
    return Decision("raise", key or f"device:{device}", AlarmType.smoke, Severity.major, Response.verify,
                    "smoke_alarm", ts, [device])


def run(watch: FloodWatch, per_second: dict[str, int], seconds: int, start_ms: int = 0) -> list[list[str]]:
    """Feed `per_second` decisions per device for `seconds` ticks of 1 s; the answer of each tick."""
    out = []
    for s in range(1, seconds + 1):
        for device, n in per_second.items():
            watch.count([raise_(device)] * n)
        out.append(watch.due(start_ms + s * 1000))
    return out


def test_a_device_above_the_rate_for_the_whole_window_is_due() -> None:
    watch = FloodWatch(5, 10)
    watch.due(0)  # the first interval starts here
    ticks = run(watch, {"LOUD": 6, "QUIET": 4}, 11)
    assert ticks[:9] == [[]] * 9  # 9 s above the rate is not yet 10
    assert ticks[9] == ["LOUD"] and ticks[10] == ["LOUD"]


def test_one_second_below_the_rate_restarts_the_window() -> None:
    watch = FloodWatch(5, 10)
    watch.due(0)
    assert run(watch, {"D": 50}, 8) == [[]] * 8
    watch.count([raise_("D")] * 4)
    assert watch.due(9000) == []
    assert run(watch, {"D": 50}, 9, 9000) == [[]] * 9
    assert run(watch, {"D": 50}, 1, 18_000) == [["D"]]


def test_a_longer_interval_scales_the_bound_and_unit_keys_do_not_count() -> None:
    watch = FloodWatch(5, 4)
    watch.due(0)
    watch.count([raise_("D")] * 9 + [raise_("D", key="unit:U1")] * 100)
    assert watch.due(2000) == []  # 9 in 2 s is below 5/s; the unit key is no device's
    watch.count([raise_("D")] * 10)
    assert watch.due(4000) == []  # 10 in 2 s: above the rate since 2000
    watch.count([raise_("D")] * 10)
    assert watch.due(6000) == ["D"]  # 4 s above the rate


def test_forget_needs_a_new_full_window() -> None:
    watch = FloodWatch(1, 3)
    watch.due(0)
    assert run(watch, {"D": 2}, 3)[-1] == ["D"]
    watch.forget("D")
    assert run(watch, {"D": 2}, 3, 3000) == [[], [], ["D"]]


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError):
        FloodWatch(0, 10)


def test_repeats_keep_the_newest_decision_and_merge_in_order() -> None:
    r = Repeats(7, 1, raise_("D", 100))
    r.add(raise_("D", 300))
    r.add(raise_("D", 200))  # out of order: counted, the newest stays
    assert (r.count, r.last.ts_ms) == (3, 300)
    merged = r.merge(Repeats(7, 2, raise_("D", 400)))
    assert (merged.alarm_id, merged.count, merged.last.ts_ms) == (7, 5, 400)

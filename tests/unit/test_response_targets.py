"""Who is told when (alerting.response.targets): levels, scope, on-duty windows, duty officers."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerting.response.targets import (
    AlarmFacts,
    Responder,
    Target,
    Window,
    covers_region,
    levels_due,
    max_level,
    raise_level,
    targets,
    told_at,
)

TZ = ZoneInfo("Asia/Shanghai")
REGION = "江西省/赣州市/章贡区/南外街道"
MONDAY_NOON = datetime(2026, 12, 7, 12, 0, tzinfo=TZ)
SMOKE = AlarmFacts("smoke", "major", "verify", "U1", REGION)


def r(rid: str, role: str, regions: tuple[str, ...] = (), units: tuple[str, ...] = (),
      on_duty: tuple[Window, ...] | None = None) -> Responder:
    return Responder(rid, role, regions, units, on_duty)


PEOPLE = [
    r("uc", "unit_contact", units=("U1",)),
    r("uc-other", "unit_contact", units=("U2",)),
    r("grid", "grid_worker", regions=("江西省/赣州市/章贡区",)),
    r("grid-near-miss", "grid_worker", regions=("江西省/赣州市/章贡",)),  # not a whole segment
    r("station", "micro_station", regions=("江西省/赣州市",)),
    r("brigade", "fire_brigade", regions=("江西省",)),
    r("duty-province", "duty_officer", regions=("江西省",)),
    r("duty-city", "duty_officer", regions=("江西省/赣州市",)),
    r("duty-elsewhere", "duty_officer", regions=("浙江省",)),
]


def ids(ts: list[Target]) -> list[tuple[str, int, str]]:
    return [(t.responder_id, t.level, t.reason) for t in ts]


def test_each_level_tells_its_role_in_scope() -> None:
    assert ids(told_at(SMOKE, 0, PEOPLE, MONDAY_NOON)) == [("uc", 0, "level")]
    assert ids(told_at(SMOKE, 1, PEOPLE, MONDAY_NOON)) == [("grid", 1, "level")]
    assert ids(told_at(SMOKE, 2, PEOPLE, MONDAY_NOON)) == [("station", 2, "level")]
    assert ids(told_at(SMOKE, 3, PEOPLE, MONDAY_NOON)) == [("brigade", 3, "level")]


def test_immediate_is_raised_at_level_one_meaning_unit_contacts_and_grid_workers_at_once() -> None:
    fire = AlarmFacts("smoke", "critical", "immediate", "U1", REGION)
    levels = levels_due(None, raise_level("immediate"))
    assert list(levels) == [0, 1]
    assert ids(targets(fire, levels, PEOPLE, MONDAY_NOON)) == [("uc", 0, "level"), ("grid", 1, "level")]
    assert list(levels_due(None, raise_level("verify"))) == [0]
    assert list(levels_due(1, 2)) == [2]  # a climb tells only the new level


def test_nobody_on_duty_goes_to_the_duty_officer_of_the_longest_prefix() -> None:
    night_only = (Window(1, time(20, 0), time(8, 0)),)
    people = [p if p.responder_id != "uc" else r("uc", "unit_contact", units=("U1",), on_duty=night_only)
              for p in PEOPLE]
    assert ids(told_at(SMOKE, 0, people, MONDAY_NOON)) == [("duty-city", 0, "duty_officer")]
    # Tuesday 07:59 is still inside Monday's overnight window
    assert ids(told_at(SMOKE, 0, people, datetime(2026, 12, 8, 7, 59, tzinfo=TZ))) == [("uc", 0, "level")]
    assert ids(told_at(SMOKE, 0, people, datetime(2026, 12, 8, 8, 0, tzinfo=TZ))) == [("duty-city", 0, "duty_officer")]


def test_duty_officers_off_duty_are_skipped_for_the_next_prefix() -> None:
    off = (Window(7, time(0, 0), time(1, 0)),)
    people = [r("duty-city", "duty_officer", regions=("江西省/赣州市",), on_duty=off),
              r("duty-province", "duty_officer", regions=("江西省",))]
    assert ids(told_at(SMOKE, 3, people, MONDAY_NOON)) == [("duty-province", 3, "duty_officer")]


def test_minor_and_warning_stay_at_level_zero_and_tell_duty_officers_too() -> None:
    low = AlarmFacts("low_battery", "warning", "verify", "U1", REGION)
    assert max_level("low_battery", "warning") == 0
    assert ids(told_at(low, 0, PEOPLE, MONDAY_NOON)) == [("uc", 0, "level"), ("duty-city", 0, "duty_officer")]


def test_only_fire_class_and_co_high_climb_past_level_one() -> None:
    assert [max_level(t, "major") for t in ("smoke", "fire", "gas_leak", "panel_fire", "co_high")] == [3] * 5
    assert [max_level(t, "major") for t in ("residual_current", "offline", "arc_fault")] == [1] * 3
    assert max_level("smoke", "minor") == 0


def test_an_empty_scope_covers_everything_and_region_prefixes_are_whole_segments() -> None:
    assert covers_region("", REGION) and covers_region("江西省/", REGION) and covers_region(REGION, REGION)
    assert not covers_region("江西省/赣州", REGION)
    everywhere = [r("any", "grid_worker")]
    assert ids(told_at(SMOKE, 1, everywhere, MONDAY_NOON)) == [("any", 1, "level")]


def test_window_parsing_rejects_nonsense() -> None:
    assert Window.parse({"weekday": 7, "start": "22:00", "end": "06:30"}) == Window(7, time(22), time(6, 30))
    for bad in ({"weekday": 0, "start": "08:00", "end": "09:00"}, {"weekday": 1, "start": "8:00", "end": "09:00"},
                {"weekday": 1, "start": "25:00", "end": "09:00"}, {"weekday": True, "start": "08:00", "end": "09:00"}):
        with pytest.raises(ValueError):
            Window.parse(bad)


@given(st.integers(1, 7), st.integers(0, 23), st.integers(0, 59), st.integers(0, 23), st.integers(0, 59),
       st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)))
def test_a_window_covers_exactly_its_minutes(wd: int, sh: int, sm: int, eh: int, em: int, at: datetime) -> None:
    w = Window(wd, time(sh, sm), time(eh, em))
    start, end = sh * 60 + sm, eh * 60 + em
    # minutes since Monday 00:00 of the covered span, and of `at`
    week = 7 * 24 * 60
    begin = (wd - 1) * 24 * 60 + start
    length = end - start if start < end else 24 * 60 - start + end
    minute = (at.isoweekday() - 1) * 24 * 60 + at.hour * 60 + at.minute
    assert w.covers(at) == ((minute - begin) % week < length)


@given(st.lists(st.sampled_from(PEOPLE), unique=True), st.sampled_from(["smoke", "offline", "co_high"]),
       st.sampled_from(["critical", "major", "minor", "warning"]), st.integers(0, 3))
def test_a_responder_is_told_at_most_once_per_level(people: list[Responder], kind: str, sev: str, lvl: int) -> None:
    told = told_at(AlarmFacts(kind, sev, "verify", "U1", REGION), lvl, people, MONDAY_NOON)
    assert len({t.responder_id for t in told}) == len(told)
    assert all(t.responder_id not in ("uc-other", "grid-near-miss", "duty-elsewhere") for t in told)

"""Pure parts of supervision (docs/supervision.md): when a region's random duty check is due, the
shield changes of readings, who sees a shift, the local month's bounds, and the monthly page."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from alerting.dutychecks import RANDOM_FROM, RANDOM_TO, random_time
from alerting.reports.monthly import MonthlyReport, month_bounds, report_csv
from alerting.reports.monthly_html import report_html
from alerting.shifts import covers
from devices.auth import Principal
from devices.kinds import Event, Kind
from devices.reading import Reading
from devices.shielded import shield_changes
from ingest.codecs.gb26875 import Command, Frame, frame_to_readings
from ingest.codecs.gb26875_appdata import AppData, ComponentStatus, encode_app_data

TZ = ZoneInfo("Asia/Shanghai")


def test_random_checks_fall_in_working_hours_fixed_per_day_and_region() -> None:
    regions = ("江西省/赣州市", "江西省/吉安市")
    times = {(d, r): random_time(date(2026, 12, d), r) for d in range(1, 29) for r in regions}
    assert all(RANDOM_FROM <= t < RANDOM_TO for t in times.values())
    assert random_time(date(2026, 12, 1), "江西省/赣州市") == times[1, "江西省/赣州市"]  # a restart does not move it
    assert len(set(times.values())) > 40  # unknown to the person on duty: not the same time every day


def test_shield_changes_come_from_the_panel_mapping() -> None:
    def word(status: int, previous: int | None, at: datetime) -> list[Reading]:
        obj = ComponentStatus(1, 1, 40, 7, status, "1区大厅感烟", at)
        frame = Frame(1, (1, 0), at, 1, 0, Command.send, encode_app_data(AppData(2, (obj,))))
        memory = None if previous is None else {"1:1:7": previous}
        return frame_to_readings(frame, received_ms=0, tz=TZ, previous=memory)

    shielded = word(1 | 1 << 3, 1, datetime(2026, 12, 1, 8, 0, 1))
    again = word(1 | 1 << 3, 1 | 1 << 3, datetime(2026, 12, 1, 8, 0, 2))
    lifted = word(1, 1 | 1 << 3, datetime(2026, 12, 1, 8, 0, 3))
    supervisory = [Reading("uitd-1", Kind.uitd, Event.supervisory, 2000, 2000, component="1:1:8")]
    elsewhere = [Reading("8681", Kind.smoke, Event.shield, 2000, 2000, component="x")]  # not a panel point
    got = shield_changes([*shielded, *supervisory, *again, *elsewhere, *lifted])
    second = int(datetime(2026, 12, 1, 0, 0, tzinfo=UTC).timestamp()) * 1000  # 08:00 in Shanghai
    assert [(c.device_id, c.point, c.shielded, c.ts_ms, c.description) for c in got] == [
        ("uitd-1", "1:1:7", True, second + 1000, "1区大厅感烟"),
        ("uitd-1", "1:1:7", True, second + 2000, "1区大厅感烟"),
        ("uitd-1", "1:1:7", False, second + 3000, "1区大厅感烟"),
    ]


def test_a_shift_is_seen_by_tokens_covering_its_scope() -> None:
    county, street = "江西省/赣州市/章贡区", "江西省/赣州市/章贡区/南外街道"
    assert covers(Principal("all", "viewer"), [street], [])
    assert covers(Principal("c", "viewer", (county,)), [street], [])
    assert not covers(Principal("s", "viewer", (street,)), [county], [])  # a wider note stays above
    assert not covers(Principal("s", "viewer", (street,)), [], [])  # an unscoped note too
    assert not covers(Principal("o", "viewer", ("江西省/赣州市/南康区",)), [street], [])
    assert covers(Principal("i", "viewer", (), ("school", "hospital")), [], ["school"])
    assert not covers(Principal("i", "viewer", (), ("school",)), [], [])


def test_the_month_is_local() -> None:
    start, end, first, nxt = month_bounds("2026-12", TZ)
    assert start.astimezone(UTC) == datetime(2026, 11, 30, 16, tzinfo=UTC)
    assert end.astimezone(UTC) == datetime(2026, 12, 31, 16, tzinfo=UTC)
    assert (first, nxt) == (date(2026, 12, 1), date(2027, 1, 1))
    for bad in ("2026-13", "2026-00", "26-12", "\uff12\uff10\uff12\uff16-12"):  # the last in fullwidth digits
        with pytest.raises(ValueError):
            month_bounds(bad, TZ)


def test_the_monthly_page_is_self_contained_and_escapes_names() -> None:
    rep = MonthlyReport("2026-12", "江西省/<b>", "", "2026-12-31T12:00:00+08:00",
                        by_type={"smoke": {"false_alarm": 3, "unclassified": 1}}, resolved=4, false_alarms=3,
                        daily=[("2026-12-01", 10, 9), ("2026-12-02", 10, 10)],
                        colours={"red": 1, "orange": 0, "yellow": 2, "green": 5})
    assert rep.alarms == 4 and rep.false_alarm_rate == 0.75 and rep.online_rate_mean == pytest.approx(0.95)
    html = report_html(rep)
    assert "<script" not in html and "<b>" not in html and "&lt;b&gt;" in html
    assert html.count("<svg") == 4 and "2026-12-01: 90.0%" in html  # the line's points carry their day's rate
    lines = report_csv(rep).splitlines()
    assert lines[0] == "分项 / section,项目 / item,数值 / value"
    assert "false_alarms,rate,0.7500" in lines and "alarms_by_classification,false_alarm,3" in lines

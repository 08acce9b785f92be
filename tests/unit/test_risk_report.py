"""The per-region report: rates from weekly columns, the CSV, and the self-contained HTML page."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, timedelta

import numpy as np

from alerting.risk_report import COLUMNS, TITLES, report_csv, report_html, report_rows

WEEKS = [date(2025, 1, 6) + timedelta(weeks=i) for i in range(4)]


def rows():
    return report_rows(WEEKS, alarms=np.array([4, 0, 10, 2.0]), false_alarms=np.array([1, 0, 5, 0.0]),
                       classified=np.array([4, 0, 8, 0.0]), offline_devices=np.array([0, 3, 1, 0.0]),
                       devices=np.array([20, 20, 40, 0.0]))


def test_rates_are_shares_and_zero_without_a_denominator() -> None:
    r = rows()
    assert [x.false_alarm_rate for x in r] == [0.25, 0.0, 0.625, 0.0]
    assert [x.offline_share for x in r] == [0.0, 0.15, 0.025, 0.0]
    assert r[0].week == "2025-01-06"


def test_csv_says_what_it_counts_then_one_line_per_week_with_every_column() -> None:
    note, *lines = report_csv(rows(), "Asia/Shanghai").splitlines()
    assert "Asia/Shanghai" in note and "不含设备健康告警" in note and "fewer than the board" in note
    parsed = [{c: p[TITLES[c]] for c in COLUMNS} for p in csv.DictReader(io.StringIO("\n".join(lines)))]
    assert lines[0].split(",")[:2] == ["周（周一）/ week", "告警数 / alarms"]
    assert [(p["week"], p["alarms"], p["false_alarm_rate"], p["offline_share"]) for p in parsed] == [
        ("2025-01-06", "4", "0.25", "0.0"), ("2025-01-13", "0", "0.0", "0.15"), ("2025-01-20", "10", "0.625", "0.025"),
        ("2025-01-27", "2", "0.0", "0.0")]


def test_html_is_self_contained_with_three_charts_and_the_table() -> None:
    page = report_html("江西省/赣州市<script>", rows(), "2025-02-01 16:00 (Asia/Shanghai)", "Asia/Shanghai")
    assert page.count("<svg") == 3 and "<script" not in page.replace("&lt;script&gt;", "")
    assert not re.search(r'(src|href)="', page)  # no external resource
    assert page.count("<rect") == 4  # one bar per week, a quiet week a zero-height one
    assert page.count("<polyline") == 2  # false-alarm rate and offline share
    assert "<td>62.5%</td>" in page and "<td>15.00%</td>" in page
    assert "江西省/赣州市&lt;script&gt;" in page
    assert "<th>误报率 / false_alarm_rate</th>" in page and "Asia/Shanghai 时区的自然周" in page


def test_html_of_an_empty_report() -> None:
    page = report_html("", [], "now", "UTC")
    assert page.count("<svg") == 3 and "全部区域" in page

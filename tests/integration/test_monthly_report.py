"""The monthly report (CONTRACT §11) of a simulated month with known ground truth, on the real
service and PostgreSQL: October 2026 in Asia/Shanghai, alarms, devices, daily samples and work
orders inserted with hand-counted figures (including alarms just inside and just outside the
local month), checked in CSV, by region, industry and token scope, and as a self-contained page."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from miaoxiang.settings import Settings
from tests.service import RunningService, running_service

pytestmark = pytest.mark.integration

TZ = ZoneInfo("Asia/Shanghai")
R = "江西省/赣州市/章贡区"
RA, RB, Q = f"{R}/南外街道", f"{R}/东外街道", "江西省/赣州市/南康区"


def local(month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=TZ)


async def _world(pool: asyncpg.Pool) -> bool:
    """The month's facts; answers whether work orders exist (migration 0016)."""
    for unit, region, industry in (("UA", RA, "school"), ("UB", RB, "hospital"), ("UQ", Q, "school")):
        await pool.execute("INSERT INTO units (unit_id, name, region, industry) VALUES ($1, $1, $2, $3)",
                           unit, region, industry)
    for device, unit, created in (("a1", "UA", local(9, 1)), ("a2", "UA", local(9, 1)), ("a3", "UA", local(9, 1)),
                                  ("a4", "UA", local(9, 1)), ("b1", "UB", local(9, 1)), ("b2", "UB", local(9, 1)),
                                  ("b3", "UB", local(11, 5)), ("q1", "UQ", local(9, 1))):
        await pool.execute("INSERT INTO devices (device_id, kind, unit_id, created_at) VALUES ($1, 'smoke', $2, $3)",
                           device, unit, created)
    s = timedelta(seconds=1)
    alarms = [
        # (type, unit, device, first_seen, status, classification, acked after, resolved after, cleared at)
        ("smoke", "UA", "a2", local(10, 3), "resolved", "false_alarm", 60 * s, 600 * s, None),
        ("smoke", "UA", "a3", local(10, 10), "resolved", "false_alarm", 120 * s, 1200 * s, None),
        ("fire", "UB", "b1", local(10, 12), "resolved", "fire", 180 * s, 1800 * s, None),
        ("smoke", "UB", "b2", local(10, 15), "resolved", "test", None, 300 * s, None),
        ("device_fault", "UA", "a4", local(10, 18), "active_unack", None, None, None, None),
        ("offline", "UA", "a1", local(10, 20), "active_unack", None, None, None, None),  # open at month end
        ("offline", "UB", "b1", local(10, 5), "cleared_ack", None, None, None, local(10, 6)),
        ("smoke", "UA", "a2", local(10, 31, 23, 30), "active_ack", None, None, None, None),  # last half hour
        ("smoke", "UA", "a3", local(11, 1, 0, 30), "active_ack", None, None, None, None),  # UTC October, local November
        ("smoke", "UA", "a3", local(9, 30, 23, 30), "resolved", "false_alarm", None, 60 * s, None),  # September
        ("offline", "UB", "b2", local(9, 25), "active_unack", None, None, None, None),  # open through October
        ("smoke", "UQ", "q1", local(10, 8), "resolved", "false_alarm", None, 60 * s, None),  # another region
    ]
    for n, (type_, unit, device, seen, status, cls, acked, resolved, cleared) in enumerate(alarms):
        region = {"UA": RA, "UB": RB, "UQ": Q}[unit]
        await pool.execute(
            """INSERT INTO alarms (alarm_key, type, severity, response, status, device_ids, unit_id, region, first_seen,
                                   last_seen, rule, classification, acked_at, resolved_at, cleared_at, created_at)
               VALUES ($1, $2, 'minor', 'verify', $3, $4, $5, $6, $7, $7, 'test', $8, $9, $10, $11, $7)""",
            f"device:{device}#{n}", type_, status, [device], unit, region, seen, cls,
            seen + acked if acked else None, seen + resolved if resolved else None, cleared,
        )
    for day, region, industry, registered, online in (
        (date(2026, 10, 1), RA, "school", 4, 4), (date(2026, 10, 2), RA, "school", 4, 3),
        (date(2026, 10, 1), RB, "hospital", 2, 2), (date(2026, 10, 2), RB, "hospital", 2, 1),
        (date(2026, 11, 1), RA, "school", 4, 0), (date(2026, 10, 1), Q, "school", 1, 0),
    ):
        await pool.execute(
            "INSERT INTO online_samples (day, region, industry, registered, online, taken_at) "
            "VALUES ($1, $2, $3, $4, $5, now())", day, region, industry, registered, online,
        )
    if not await pool.fetchval("SELECT to_regclass('work_orders') IS NOT NULL"):
        return False
    for unit, region, industry, created, due, state, closed in (
        ("UA", RA, "school", local(10, 5), date(2026, 10, 20), "open", None),  # opened, overdue at the end
        ("UB", RB, "hospital", local(9, 20), date(2026, 10, 31), "verified", local(10, 10)),  # closed
        ("UB", RB, "hospital", local(10, 25), date(2026, 11, 30), "assigned", None),  # opened, not yet due
        ("UQ", Q, "school", local(10, 25), date(2026, 10, 26), "open", None),  # another region
    ):
        await pool.execute(
            """INSERT INTO work_orders (kind, unit_id, region, industry, reason, due, state, opened_by, created_at,
                                        updated_at, closed_at)
               VALUES ('repair', $1, $2, $3, '故障', $4, $5, 'system', $6, $6, $7)""",
            unit, region, industry, due, state, created, closed,
        )
    return True


async def _csv(svc: RunningService, headers: dict[str, str] | None = None, **params: str) -> dict[tuple[str, str], str]:
    got = await svc.http.get("/api/v1/reports/monthly", params={"month": "2026-10", **params},
                             headers=headers or svc.auth())
    assert got.status_code == 200, got.text
    assert got.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(got.text)))
    assert rows[0] == ["分项 / section", "项目 / item", "数值 / value"]
    return {(r[0], r[1]): r[2] for r in rows[1:]}


async def test_monthly_report_of_a_known_month(settings: Settings) -> None:
    async with running_service(settings) as svc:
        work_orders = await _world(svc.app.state.services.pool)
        await svc.app.state.services.risk.refresh(full=True)
        r = await _csv(svc, region=R)

        assert r["month", "month"] == "2026-10" and r["month", "region"] == R
        assert r["alarms", "total"] == "8"
        assert {k[1]: v for k, v in r.items() if k[0] == "alarms_by_type"} == {
            "device_fault": "1", "fire": "1", "offline": "2", "smoke": "4"}
        assert {k[1]: v for k, v in r.items() if k[0] == "alarms_by_classification"} == {
            "fire": "1", "false_alarm": "2", "test": "1", "fault": "0", "other": "0", "unclassified": "4"}
        assert (r["false_alarms", "resolved"], r["false_alarms", "false_alarm"], r["false_alarms", "rate"]) == (
            "4", "2", "0.5000")
        assert (r["response_times", "acked_s_median"], r["response_times", "acked_s_p90"],
                r["response_times", "acked_s_count"]) == ("120.0", "168.0", "3")
        assert (r["response_times", "resolved_s_median"], r["response_times", "resolved_s_p90"]) == ("900.0", "1620.0")
        assert (r["response_times", "notified_s_median"], r["response_times", "notified_s_count"]) == ("", "0")
        assert (r["online", "registered_at_end"], r["online", "online_at_end"], r["online", "rate_at_end"]) == (
            "6", "4", "0.6667")
        assert (r["online", "daily_samples"], r["online", "rate_daily_mean"]) == ("2", "0.8333")
        if work_orders:
            assert (r["work_orders", "opened"], r["work_orders", "closed"], r["work_orders", "overdue"]) == (
                "2", "1", "1")
        colours = {k[1]: int(v) for k, v in r.items() if k[0] == "risk_colours"}
        assert set(colours) == {"red", "orange", "yellow", "green"} and sum(colours.values()) == 2  # UA and UB

        hospital = await _csv(svc, region=R, industry="hospital")
        assert hospital["alarms", "total"] == "3" and hospital["online", "registered_at_end"] == "2"
        assert hospital["online", "online_at_end"] == "1" and hospital["online", "rate_daily_mean"] == "0.7500"

        everywhere = await _csv(svc)
        assert everywhere["alarms", "total"] == "9" and everywhere["false_alarms", "false_alarm"] == "3"

        made = await svc.http.post("/api/v1/tokens", json={"name": "street", "role": "viewer", "regions": [RA]},
                                   headers=svc.auth())
        street = {"Authorization": f"Bearer {made.json()['token']}"}
        scoped = await _csv(svc, street, region=R)  # the filter narrows the token's scope, never widens it
        assert scoped["alarms", "total"] == "5" and scoped["online", "registered_at_end"] == "4"
        assert sum(int(v) for k, v in scoped.items() if k[0] == "risk_colours") == 1

        for bad in ("2026-13", "2026-1", "10-2026", "\uff12\uff10\uff12\uff16-10"):  # the last in fullwidth digits
            got = await svc.http.get("/api/v1/reports/monthly", params={"month": bad}, headers=svc.auth())
            assert got.status_code == 422, bad

        page = await svc.http.get("/api/v1/reports/monthly", params={"month": "2026-10", "region": R, "format": "html"},
                                  headers=svc.auth())
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        html = page.text
        assert html.count("<svg") >= 4 and "2026-10" in html and "误报率 / false-alarm rate 50.0%" in html
        assert "<script" not in html.lower() and not re.search(r"""(src|href)\s*=|@import|url\(""", html)
        assert "月末联网率 / online at month end 66.7%" in html

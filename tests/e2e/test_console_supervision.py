"""The console's supervision parts in a browser, on the real service: a region's latest duty checks
(查岗) and the last shift handover in the units view, a supervisor's override on the unit, and the
monthly report downloaded from its month picker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from miaoxiang.migrate import migrate
from miaoxiang.settings import DEFAULT_MIGRATIONS_DIR, Settings
from tests.e2e.test_console import _log_in, page  # noqa: F401 - the browser page fixture
from tests.service import running_service

DH = "江西省/南昌市/东湖区/公园街道"


async def _seed(database_url: str) -> None:
    now = datetime.now(UTC)
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn, DEFAULT_MIGRATIONS_DIR)
        await conn.execute(
            "INSERT INTO units (unit_id, name, region, industry) VALUES ('U-d', '东湖小学', $1, 'school')", DH)
        await conn.execute("INSERT INTO devices (device_id, kind, unit_id) VALUES ('uitd-7', 'uitd', 'U-d')")
        for state, minutes in (("answered", 30), ("missed", 20)):
            await conn.execute(
                """INSERT INTO duty_checks (device_id, unit_id, region, industry, answer_minutes, state, requested_by,
                                            sent_at, deadline)
                   VALUES ('uitd-7', 'U-d', $1, 'school', 10, $2, 'op', $3, $4)""",
                DH, state, now - timedelta(minutes=minutes), now - timedelta(minutes=minutes - 10),
            )
        await conn.execute(
            "INSERT INTO shifts (closed_by, closed_at, note, open_alarms) "
            "VALUES ('夜班', $1, '7 号主机查岗未应答', '[{}]')",
            now,
        )
        await conn.execute(
            "INSERT INTO risk_overrides (unit_id, colour, reason, until, set_by, set_at) "
            "VALUES ('U-d', 'orange', '现场检查', $1, 'admin', $2)", now + timedelta(days=1), now,
        )
    finally:
        await conn.close()


@pytest.mark.browser
@pytest.mark.integration
async def test_units_view_shows_duty_checks_handover_override_and_monthly_report(
    settings: Settings, page, tmp_path: Path  # noqa: F811
) -> None:
    from playwright.async_api import expect

    await _seed(settings.database_url or "")
    async with running_service(settings) as svc:
        await _log_in(page, svc)
        await page.get_by_test_id("nav-units").click()
        for name in ("江西省", "南昌市", "东湖区", "公园街道"):
            await page.get_by_test_id("region-card").filter(has_text=name).click()
        checks = page.get_by_test_id("duty-checks").locator("li")
        await expect(checks).to_have_count(2)
        await expect(checks.first).to_have_attribute("data-state", "missed")  # newest first
        await expect(checks.first).to_contain_text("未应答")
        await expect(page.get_by_test_id("last-shift")).to_contain_text("夜班")
        await expect(page.get_by_test_id("last-shift")).to_contain_text("7 号主机查岗未应答")
        await expect(page.get_by_test_id("last-shift")).to_contain_text("1 条未结束告警")

        await page.get_by_test_id("unit-row").get_by_role("button", name="东湖小学").click()
        await expect(page.get_by_test_id("risk-override")).to_contain_text("人工定级")
        await expect(page.get_by_test_id("risk-parts")).to_contain_text("隐患工单与屏蔽点位")

        month = datetime.now(UTC).strftime("%Y-%m")
        await page.get_by_test_id("monthly-month").fill(month)
        async with page.expect_download() as info:
            await page.get_by_test_id("monthly-csv").click()
        download = await info.value
        saved = tmp_path / download.suggested_filename
        await download.save_as(saved)
        lines = saved.read_text(encoding="utf-8").splitlines()
        assert lines[0] == "分项 / section,项目 / item,数值 / value"
        assert f"month,month,{month}" in lines and f"month,region,{DH}" in lines
        assert "risk_colours,orange,1" in lines  # the override counts as its colour

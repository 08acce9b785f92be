"""The console's risk views in a browser, on the real service: four-colour badges from
`GET /api/v1/units`, a region's trend warning, a unit's score parts, and the report export."""

from __future__ import annotations

import json
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
    """Before the service starts: a temple with a jump in false alarms this week, a unit with an
    open 秒响应 fire, and a unit with nothing at all (no detector)."""
    now = datetime.now(UTC)
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn, DEFAULT_MIGRATIONS_DIR)
        for unit, industry in (("U-temple", "religion"), ("U-fire", "residential"), ("U-empty", "residential")):
            await conn.execute(
                "INSERT INTO units (unit_id, name, region, industry) VALUES ($1, $1, $2, $3)", unit, DH, industry
            )
        ages = [timedelta(weeks=w + 1, hours=1) for w in range(12)] + [timedelta(hours=i + 1) for i in range(12)]
        rows = [("U-temple", "smoke", "major", "verify", "resolved", "false_alarm", age) for age in ages]
        rows.append(("U-fire", "fire", "critical", "immediate", "active_unack", None, timedelta(minutes=5)))
        for i, (unit, type_, severity, response, status, classification, age) in enumerate(rows):
            alarm_id = await conn.fetchval(
                """INSERT INTO alarms (alarm_key, type, severity, response, status, unit_id, region, first_seen,
                                       last_seen, rule, classification)
                                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, 'seed', $9)
                   RETURNING alarm_id""",
                f"device:seed-{i}", type_, severity, response, status, unit, DH, now - age, classification,
            )
            await conn.execute("INSERT INTO alarm_events (alarm_id, action, snapshot) VALUES ($1, 'raised', $2)",
                               alarm_id, json.dumps({}))
    finally:
        await conn.close()


@pytest.mark.browser
@pytest.mark.integration
async def test_units_view_shows_colours_trends_score_and_exports(
    settings: Settings, page, artifacts: Path, tmp_path: Path  # noqa: F811
) -> None:
    from playwright.async_api import expect

    await _seed(settings.database_url or "")
    async with running_service(settings) as svc:
        await _log_in(page, svc)
        await page.get_by_test_id("nav-units").click()
        card = page.get_by_test_id("region-card").filter(has_text="江西省")
        await expect(card).to_be_visible()
        await card.click()
        for name in ("南昌市", "东湖区"):
            await page.get_by_test_id("region-card").filter(has_text=name).click()
        trend = page.get_by_test_id("trend-alert").filter(has_text="公园街道")
        await expect(trend).to_be_visible()
        await expect(trend).to_contain_text("近7天 13 起告警")
        religion = page.locator('[data-testid="trend-alert"][data-by="industry"][data-group="religion"]')
        await expect(religion).to_be_visible()
        await page.get_by_test_id("region-card").filter(has_text="公园街道").click()

        rows = page.get_by_test_id("unit-row")
        await expect(rows).to_have_count(3)
        colours = {
            await r.get_attribute("data-unit-id"): await r.get_by_test_id("risk-badge").get_attribute("data-colour")
            for r in await rows.all()
        }
        # an open 秒响应 fire: red; open alarms none but 24 false alarms (30) + no detector (40): red; nothing: 40
        assert colours == {"U-fire": "red", "U-temple": "red", "U-empty": "orange"}
        assert await rows.first.get_attribute("data-unit-id") in ("U-fire", "U-temple")  # red first
        await page.screenshot(path=artifacts / "console-6-units-risk.png")

        await rows.filter(has_text="U-empty").get_by_role("button", name="U-empty").click()
        detail = page.get_by_test_id("unit-detail")
        await expect(detail.get_by_test_id("risk-score")).to_have_text("40")
        await expect(detail.get_by_test_id("risk-parts")).to_contain_text("无可用探测器")

        async with page.expect_download() as info:
            await page.get_by_test_id("report-csv").click()
        download = await info.value
        saved = tmp_path / download.suggested_filename
        await download.save_as(saved)
        lines = saved.read_text(encoding="utf-8").splitlines()
        assert download.suggested_filename == f"risk-report-{DH.replace('/', '-')}.csv"
        assert "少于告警看板" in lines[0] and len(lines) == 15
        assert lines[1].startswith("周（周一）/ week,告警数 / alarms")

        await page.get_by_test_id("lang-toggle").click()
        await expect(page.get_by_test_id("report-html")).to_have_text("Export chart")

"""Incidents on the alarm board in a browser (issue 19, CONTRACT §8 Incidents): one fire is one row
that expands to its detector alarms (by click and by →/←), counts once in its lane, and
acknowledging its row acknowledges the detector alarms too; the same on a phone without sideways
scrolling. Screenshots in test-artifacts/; any console error fails the test (`open_page`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from miaoxiang.migrate import migrate
from miaoxiang.settings import DEFAULT_MIGRATIONS_DIR, Settings
from tests.e2e import test_console_board as board
from tests.e2e.test_console import _log_in
from tests.service import running_service

GZ = "江西省/赣州市/章贡区/南外街道"
open_page = board.open_page  # the fixture, shared with the board's tests
Opener = board.Opener


async def _seed(database_url: str) -> dict[str, str]:
    """Before the service starts: a unit whose fire has three smoke alarms as children (linked as
    the lifecycle links them) and an electrical alarm of its own; escalation held."""
    now = datetime.now(UTC)
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn, DEFAULT_MIGRATIONS_DIR)
        await conn.execute("INSERT INTO units (unit_id, name, address, region, industry) VALUES "
                           "('U-fire', '赣南商场', '章贡区文清路 8 号', $1, 'commercial')", GZ)
        ids: dict[str, str] = {}

        async def alarm(key: str, type_: str, severity: str, response: str, ago_s: int, level: int) -> str:
            at = now - timedelta(seconds=ago_s)
            alarm_id = await conn.fetchval(
                """INSERT INTO alarms (alarm_key, type, severity, response, status, device_ids, unit_id, region,
                                       first_seen, last_seen, rule, escalation_level, created_at, held_until)
                   VALUES ($1, $2, $3, $4, 'active_unack', $5, 'U-fire', $6, $7, $7, $8, $9, $7, $10)
                   RETURNING alarm_id""",
                key, type_, severity, response, [key.split(":")[1]], GZ, at, f"{type_}.rule", level,
                now + timedelta(days=1))
            await conn.execute("INSERT INTO alarm_events (alarm_id, action, snapshot) VALUES ($1, 'raised', $2)",
                               alarm_id, json.dumps({}))
            return str(alarm_id)

        for i in (1, 2, 3):
            ids[f"smoke{i}"] = await alarm(f"device:S{i}", "smoke", "major", "verify", 200 - 10 * i, 0)
        ids["fire"] = await alarm("unit:U-fire", "fire", "critical", "immediate", 165, 2)
        ids["resid"] = await alarm("device:E1", "residual_current", "major", "verify", 300, 0)
        children = [int(ids[f"smoke{i}"]) for i in (1, 2, 3)]
        await conn.execute("UPDATE alarms SET parent_id = $1 WHERE alarm_id = ANY($2::bigint[])",
                           int(ids["fire"]), children)
        await conn.execute("UPDATE alarms SET children = $2 WHERE alarm_id = $1", int(ids["fire"]), children)
        return ids
    finally:
        await conn.close()


async def _row_ids(page) -> list[str]:  # page: a Playwright Page
    return await page.get_by_test_id("alarm-row").evaluate_all("rows => rows.map(r => r.dataset.alarmId)")


@pytest.mark.browser
@pytest.mark.integration
async def test_one_fire_is_one_row_that_expands_and_acks_as_one(
    settings: Settings, open_page: Opener, artifacts: Path
) -> None:
    from playwright.async_api import expect

    ids = await _seed(settings.database_url or "")
    smokes = [ids[f"smoke{i}"] for i in (1, 2, 3)]
    async with running_service(settings) as svc:
        page = await open_page(board.DESKTOP)
        await _log_in(page, svc)
        rows = page.get_by_test_id("alarm-row")
        fire = page.locator(f"[data-testid='alarm-row'][data-alarm-id='{ids['fire']}']")

        # one row for the fire, counted once; its detector alarms are folded under it
        await expect(rows).to_have_count(2)
        assert await _row_ids(page) == [ids["fire"], ids["resid"]]
        await expect(page.get_by_test_id("lane-urgent-count")).to_have_text("2")
        toggle = fire.get_by_test_id("incident-toggle")
        await expect(toggle).to_contain_text("3 个探测器告警")
        await expect(toggle).to_have_attribute("aria-expanded", "false")
        await page.screenshot(path=artifacts / "incident-1-collapsed-desktop.png")

        # a click shows them under it, indented; the order below stays the urgency order
        await toggle.click()
        await expect(rows).to_have_count(5)
        assert await _row_ids(page) == [ids["fire"], *smokes, ids["resid"]]
        children = page.locator(f"[data-testid='alarm-row'][data-parent-id='{ids['fire']}']")
        await expect(children).to_have_count(3)
        await expect(children.first.get_by_test_id("alarm-level")).to_have_text("随火警通知")
        await page.screenshot(path=artifacts / "incident-2-expanded-desktop.png")

        # keyboard: ← closes, → opens, J walks into the children, ← on a child goes back to the fire
        await page.mouse.move(5, 5)
        await page.evaluate("document.activeElement.blur()")  # off the toggle just clicked
        await page.locator("body").press("j")
        assert await page.evaluate("document.activeElement.dataset.alarmId") == ids["fire"]
        await page.keyboard.press("ArrowLeft")
        await expect(rows).to_have_count(2)
        await page.keyboard.press("ArrowRight")
        await expect(rows).to_have_count(5)
        await page.keyboard.press("j")
        assert await page.evaluate("document.activeElement.dataset.alarmId") == smokes[0]
        await page.keyboard.press("ArrowLeft")
        assert await page.evaluate("document.activeElement.dataset.alarmId") == ids["fire"]

        # A on the fire's row acknowledges the incident: the fire and every detector alarm
        await page.keyboard.press("a")
        await expect(fire).to_have_attribute("data-status", "active_ack")
        for child in smokes:
            row = page.locator(f"[data-testid='alarm-row'][data-alarm-id='{child}']")
            await expect(row).to_have_attribute("data-status", "active_ack")
            alarm = (await svc.http.get(f"/api/v1/alarms/{child}", headers=svc.auth())).json()
            assert (alarm["status"], alarm["parent_id"]) == ("active_ack", ids["fire"])
            assert [e["actor"] for e in alarm["timeline"] if e["action"] == "acked"] == ["admin"]
        resid = (await svc.http.get(f"/api/v1/alarms/{ids['resid']}", headers=svc.auth())).json()
        assert resid["status"] == "active_unack"  # not part of the fire
        await page.screenshot(path=artifacts / "incident-3-acknowledged-desktop.png")

        # the detail links the fire and its detector alarms both ways
        await fire.get_by_test_id("detail-button").click()
        detail = page.get_by_test_id("alarm-detail")
        await expect(detail.get_by_test_id("alarm-child")).to_have_count(3)
        await detail.locator(f"[data-testid='alarm-child'][data-alarm-id='{smokes[0]}']").click()
        await expect(detail.get_by_test_id("alarm-parent")).to_have_text(f"#{ids['fire']}")
        await expect(detail.get_by_test_id("timeline-event").first).to_have_attribute("data-action", "raised")
        await page.keyboard.press("Escape")

        # on a phone: cards, the children indented under the fire's card, no sideways scrolling
        phone = await open_page(board.PHONE)
        await _log_in(phone, svc)
        phone_rows = phone.get_by_test_id("alarm-row")
        await expect(phone_rows).to_have_count(2)
        await phone.get_by_test_id("incident-toggle").click()
        await expect(phone_rows).to_have_count(5)
        assert await phone.evaluate("document.documentElement.scrollWidth <= innerWidth")
        child_card = phone.locator(f"[data-testid='alarm-row'][data-alarm-id='{smokes[0]}']")
        assert await child_card.evaluate("r => getComputedStyle(r).display") == "grid"
        fire_box = await phone.locator(f"[data-testid='alarm-row'][data-alarm-id='{ids['fire']}']").bounding_box()
        child_box = await child_card.bounding_box()
        assert fire_box and child_box and child_box["x"] > fire_box["x"]  # indented under its fire
        toggle_box = await phone.get_by_test_id("incident-toggle").bounding_box()
        assert toggle_box and toggle_box["height"] >= 44
        await phone.screenshot(path=artifacts / "incident-4-expanded-phone.png", full_page=True)
        for tab in (page, phone):
            await tab.close()  # before the service stops, or the stream's reconnects log errors

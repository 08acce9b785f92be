"""The alarm board in a browser, on the real service (issue 19): two lanes with counts, urgency
order, filters kept in the address, a new alarm announced without moving the row under the
pointer, keyboard acknowledgement, suppressed rows with their reason, the sound-off line of the
banner, and a phone layout of cards with no sideways scrolling. Screenshots in test-artifacts/."""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from miaoxiang.migrate import migrate
from miaoxiang.settings import DEFAULT_MIGRATIONS_DIR, Settings
from tests.e2e.test_console import ADMIN, CHROMIUM, CHROMIUM_ARGS, _log_in, _publish_smoke_alarm, _register
from tests.service import running_service

GZ = "江西省/赣州市/章贡区/南外街道"
NC = "江西省/南昌市/东湖区/公园街道"
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}

# (key, type, severity, response, status, unit, region, minutes ago, escalation level, rule)
SEED = [
    ("fire-old-l0", "smoke", "critical", "immediate", "active_unack", "U-school", GZ, 20, 0, "smoke.heat"),
    ("fire-new-l2", "fire", "critical", "immediate", "active_unack", "U-home", GZ, 3, 2, "panel.fire"),
    ("fire-acked", "smoke", "critical", "immediate", "active_ack", "U-home", GZ, 30, 1, "smoke.heat"),
    ("resid", "residual_current", "major", "verify", "active_unack", "U-home", GZ, 40, 0,
     "electrical.residual_current"),
    ("test", "smoke", "minor", "none", "active_ack", "U-school", GZ, 50, 0, "suppressed.test"),
    ("battery", "low_battery", "warning", "verify", "active_unack", "U-school", GZ, 60, 0, "device.low_battery"),
    ("offline", "offline", "minor", "verify", "active_unack", "U-temple", NC, 70, 0, "device.offline"),
    ("closed", "fire", "critical", "immediate", "resolved", "U-temple", NC, 80, 0, "panel.fire"),
]
URGENT_ORDER = ["fire-new-l2", "fire-old-l0", "fire-acked", "resid", "test"]  # most escalated, then oldest


async def _seed(database_url: str) -> dict[str, str]:
    """Before the service starts: three units of three industries and the alarms of SEED (their
    escalation held, so the order stays what the test says); answers alarm ids by key."""
    now = datetime.now(UTC)
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn, DEFAULT_MIGRATIONS_DIR)
        units = (("U-school", "第三小学", GZ, "school"), ("U-home", "南外街道 12 号住宅", GZ, "residential"),
                 ("U-temple", "佑民寺", NC, "religious"))
        for unit, name, region, industry in units:
            await conn.execute(
                "INSERT INTO units (unit_id, name, address, region, industry) VALUES ($1, $2, $3, $4, $5)",
                unit, name, f"{name} 地址", region, industry)
        ids = {}
        for key, type_, severity, response, status, unit, region, ago, level, rule in SEED:
            at = now - timedelta(minutes=ago)
            ids[key] = str(await conn.fetchval(
                """INSERT INTO alarms (alarm_key, type, severity, response, status, device_ids, unit_id, region,
                                       first_seen, last_seen, rule, escalation_level, created_at, held_until)
                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11, $9, $12) RETURNING alarm_id""",
                f"device:{key}", type_, severity, response, status, [f"dev-{key}"], unit, region, at, rule, level,
                now + timedelta(days=1)))
            await conn.execute("INSERT INTO alarm_events (alarm_id, action, snapshot) VALUES ($1, 'raised', $2)",
                               int(ids[key]), json.dumps({}))
        return ids
    finally:
        await conn.close()


Opener = Callable[[dict[str, int]], Awaitable[object]]


@pytest.fixture
async def open_page() -> AsyncIterator[Opener]:
    """Opens Chromium pages of a given viewport; fails the test on any script error or console error."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.async_api import async_playwright

    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

        async def opener(viewport: dict[str, int]) -> object:
            tab = await browser.new_page(viewport=viewport)
            tab.on("pageerror", lambda e: errors.append(str(e)))
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            return tab

        try:
            yield opener
        finally:
            await browser.close()
    assert errors == []


async def _row_keys(page) -> list[str]:  # page: a Playwright Page
    return await page.get_by_test_id("alarm-row").evaluate_all("rows => rows.map(r => r.dataset.alarmId)")


@pytest.mark.browser
@pytest.mark.integration
async def test_board_lanes_order_filters_news_keyboard_and_suppression(
    settings: Settings, open_page: Opener, artifacts: Path
) -> None:
    from playwright.async_api import expect

    ids = await _seed(settings.database_url or "")
    key_of = {v: k for k, v in ids.items()}
    async with running_service(settings) as svc:
        await _register(svc, "U-live", "868120300000077")
        page = await open_page(DESKTOP)
        await _log_in(page, svc)

        # lanes and counts: fires and alarms to handle first; battery and offline in the health lane
        await expect(page.get_by_test_id("lane-urgent-count")).to_have_text("5")
        await expect(page.get_by_test_id("lane-health-count")).to_have_text("2")
        assert [key_of[i] for i in await _row_keys(page)] == URGENT_ORDER
        rows = page.get_by_test_id("alarm-row")
        await expect(rows.first.get_by_test_id("alarm-level")).to_have_text("微型消防站")
        await expect(rows.first).to_contain_text("南外街道 12 号住宅")
        await expect(rows.first).to_contain_text("住宅")  # the unit's industry in words, not `residential`
        await expect(rows.first.locator("td.elapsed")).to_contain_text("分")

        # a suppressed alarm is muted and says why
        quiet = page.locator(f"[data-testid='alarm-row'][data-alarm-id='{ids['test']}']")
        await expect(quiet).to_have_class(re.compile(r"\bsuppressed\b"))
        await expect(quiet.get_by_test_id("suppressed-reason")).to_contain_text("测试事件")
        await page.screenshot(path=artifacts / "board-1-urgent-desktop.png", full_page=True)

        # a new alarm while the pointer rests on a row: announced, the row stays where it is
        await quiet.hover()
        box = await quiet.bounding_box()
        assert box
        await _publish_smoke_alarm(settings, "868120300000077", temperature_c=30.0)
        news = page.get_by_test_id("board-news")
        await expect(news).to_be_visible(timeout=5000)
        await expect(news).to_contain_text("1")
        await expect(page.get_by_test_id("board-announce")).to_contain_text("烟感报警")
        assert await quiet.bounding_box() == box
        assert [key_of.get(i) for i in await _row_keys(page)] == URGENT_ORDER
        await page.screenshot(path=artifacts / "board-2-new-alarm-held.png")
        await page.mouse.move(5, 5)  # the pointer leaves the rows: the new alarm takes its place
        await expect(news).to_be_hidden()
        await expect(rows).to_have_count(6)
        keys = await _row_keys(page)
        assert keys.index(ids["resid"]) < len(URGENT_ORDER) - 1 < keys.index(ids["test"])  # above the quiet one now
        await expect(page.get_by_test_id("lane-urgent-count")).to_have_text("6")

        # keyboard: J selects the top row, J moves down, A acknowledges, Enter opens the detail
        await page.mouse.move(5, 5)
        await page.locator("body").press("j")
        await page.keyboard.press("j")
        focused = await page.evaluate("document.activeElement.dataset.alarmId")
        assert focused == ids["fire-old-l0"]
        await page.keyboard.press("a")
        target = page.locator(f"[data-testid='alarm-row'][data-alarm-id='{ids['fire-old-l0']}']")
        await expect(target).to_have_attribute("data-status", "active_ack")
        alarm = (await svc.http.get(f"/api/v1/alarms/{ids['fire-old-l0']}", headers=svc.auth())).json()
        assert alarm["status"] == "active_ack"
        assert await page.evaluate("document.activeElement.dataset.alarmId") == ids["fire-old-l0"]
        await page.keyboard.press("Enter")
        await expect(page.get_by_test_id("alarm-detail")).to_be_visible()
        await page.keyboard.press("Escape")

        # filters: the health lane, one industry; kept in the address and restored from it
        await page.get_by_test_id("lane-health").click()
        assert [key_of[i] for i in await _row_keys(page)] == ["offline", "battery"]  # the oldest first
        await page.get_by_test_id("board-industry").select_option("religious")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_have_attribute("data-alarm-id", ids["offline"])
        query = parse_qs(urlsplit(page.url).query)
        assert (query["lane"], query["industry"]) == (["health"], ["religious"])
        await page.screenshot(path=artifacts / "board-3-health-filtered.png")

        shared = await open_page(DESKTOP)
        await shared.goto(svc.base_url + "/?lane=urgent&type=smoke&region=" + GZ + "&status=all")
        await shared.get_by_label("访问令牌").fill(ADMIN)
        await shared.get_by_test_id("login-submit").click()
        await expect(shared.get_by_test_id("lane-urgent")).to_have_attribute("aria-pressed", "true")
        await expect(shared.get_by_test_id("board-type")).to_have_value("smoke")
        await expect(shared.get_by_test_id("board-region")).to_have_value(GZ)
        await expect(shared.get_by_test_id("board-filter")).to_have_value("all")
        shared_rows = shared.get_by_test_id("alarm-row")
        await expect(shared_rows).to_have_count(4)  # the three seeded smoke alarms and the live one, all in 赣州
        assert all(t == "smoke" for t in await shared_rows.evaluate_all("rs => rs.map(r => r.dataset.type)"))

        # the banner says when the sound is off and how to turn it on
        await page.get_by_test_id("lane-urgent").click()
        banner = page.get_by_test_id("immediate-banner")
        await expect(banner).to_be_visible()
        if await page.get_by_test_id("sound-toggle").get_attribute("aria-pressed") == "true":
            await page.get_by_test_id("sound-toggle").click()
        await expect(page.get_by_test_id("banner-sound")).to_contain_text("声音已关闭")
        await page.screenshot(path=artifacts / "board-4-sound-off.png")
        await page.get_by_test_id("banner-sound-on").click()
        await expect(page.get_by_test_id("banner-sound")).to_be_hidden()
        for tab in (page, shared):
            await tab.close()  # before the service stops, or the stream's reconnects log errors


@pytest.mark.browser
@pytest.mark.integration
async def test_board_on_a_phone_is_cards_without_sideways_scrolling(
    settings: Settings, open_page: Opener, artifacts: Path
) -> None:
    from playwright.async_api import expect

    await _seed(settings.database_url or "")
    async with running_service(settings) as svc:
        page = await open_page(PHONE)
        await _log_in(page, svc)
        rows = page.get_by_test_id("alarm-row")
        await expect(rows).to_have_count(len(URGENT_ORDER))
        assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        assert await rows.first.evaluate("r => getComputedStyle(r).display") == "grid"  # a card, not a table row
        header = await page.locator("header.top").bounding_box()
        assert header and header["height"] < 60  # one line
        lang = await page.get_by_test_id("lang-toggle").bounding_box()
        logout = await page.get_by_test_id("logout").bounding_box()
        assert lang and logout and logout["x"] - (lang["x"] + lang["width"]) > 100  # far apart
        ack = await rows.first.get_by_test_id("ack-button").bounding_box()
        assert ack and ack["height"] >= 44 and ack["width"] >= 120  # a thumb reaches and hits it
        await page.screenshot(path=artifacts / "board-5-phone.png", full_page=True)
        await page.get_by_test_id("lane-health").click()
        await expect(rows).to_have_count(2)
        assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        await page.screenshot(path=artifacts / "board-6-phone-health.png")
        await page.get_by_test_id("lang-toggle").click()
        await expect(page.get_by_test_id("lane-health")).to_contain_text("Device health")
        await expect(rows.first.locator("td.elapsed")).to_contain_text("h")
        await expect(rows.first.get_by_test_id("alarm-level")).to_have_text("unit contact")
        assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        await page.screenshot(path=artifacts / "board-7-phone-english.png")
        await page.close()

"""The console shows a device clock running ahead (issue 16): a badge on the alarm whose evidence
was clamped, on that evidence, and on the device (list and detail)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from miaoxiang.settings import Settings
from tests.e2e.test_console import _log_in, _register, page  # noqa: F401 - `page` is a fixture
from tests.service import running_service

YEAR_9999_MS = 253_402_300_799_000


@pytest.mark.browser
@pytest.mark.integration
async def test_a_clamped_report_shows_a_clock_skew_badge_on_the_alarm_and_the_device(
    settings: Settings, page, artifacts: Path  # noqa: F811
) -> None:
    import aiomqtt
    from playwright.async_api import expect

    device = "868120300009999"
    async with running_service(settings) as svc:
        await _register(svc, "U-console-skew", device)
        await _log_in(page, svc)
        broker = urlsplit(settings.mqtt_url or "")
        report = {"ts": YEAR_9999_MS, "seq": 1, "event": "alarm", "data": {"smoke_obscuration_pct_m": 4.2}}
        async with aiomqtt.Client(broker.hostname or "127.0.0.1", broker.port or 1883) as mqtt:
            await mqtt.publish(settings.topic("evt", "smoke", device), json.dumps(report), qos=1)
        row = page.get_by_test_id("alarm-row").filter(has_text=device)
        await expect(row).to_be_visible(timeout=5000)
        await row.get_by_test_id("detail-button").click()
        detail = page.get_by_test_id("alarm-detail")
        await expect(detail.locator(".badges").get_by_test_id("clock-skew")).to_have_text("设备时钟超前")
        await expect(detail.get_by_test_id("timeline-evidence").get_by_test_id("clock-skew")).to_be_visible()
        await page.screenshot(path=artifacts / "console-clock-skew-alarm.png")

        await detail.get_by_role("button", name=device).first.click()
        await expect(page.get_by_test_id("device-heading")).to_have_text(device)
        badge = page.get_by_test_id("device-detail").get_by_test_id("clock-skew")
        await expect(badge).to_be_visible()
        assert "251" in (await badge.get_attribute("title") or "")  # the offset in seconds (2.5e11 s ahead)
        await page.get_by_test_id("lang-toggle").click()
        await expect(badge).to_have_text("Device clock ahead")
        await page.screenshot(path=artifacts / "console-clock-skew-device.png")

"""The console's work-order page in a browser, on the real service: the list with its filters,
an order's history and actions, and the links from the alarm and device views (CONTRACT §11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from miaoxiang.settings import Settings
from tests.e2e.test_console import _log_in, _publish_smoke_alarm, _register, page  # noqa: F401 - page fixture
from tests.service import running_service


@pytest.mark.browser
@pytest.mark.integration
async def test_work_order_list_filters_detail_and_links(
    settings: Settings, page, artifacts: Path  # noqa: F811
) -> None:
    from playwright.async_api import expect

    device, other = "868120300000077", "868120300000078"
    async with running_service(settings) as svc:
        await _register(svc, "U-wo-1", device)
        await _register(svc, "U-wo-2", other)
        orders = [{"device_ids": [device], "reason": "消防通道堵塞", "due": "2020-01-31"},
                  {"device_ids": [other], "kind": "battery", "reason": "电池待更换"}]
        for body in orders:
            r = await svc.http.post("/api/v1/work-orders", json=body, headers=svc.auth())
            assert r.status_code == 201, r.text
        await _log_in(page, svc)

        await page.get_by_test_id("nav-workorders").click()
        await page.get_by_test_id("wo-filter-form").get_by_role("button").click()
        rows = page.get_by_test_id("wo-row")
        await expect(rows).to_have_count(2)
        await page.get_by_test_id("wo-overdue").select_option("true")
        await page.get_by_test_id("wo-filter-form").get_by_role("button").click()
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_contain_text(device)
        await expect(rows.first.get_by_test_id("wo-overdue-badge")).to_be_visible()

        await rows.first.get_by_role("button").click()
        detail = page.get_by_test_id("wo-detail")
        await expect(detail.get_by_test_id("wo-history")).to_contain_text("开单")
        await detail.get_by_test_id("wo-fixed").click()
        await expect(detail.get_by_test_id("wo-history")).to_contain_text("已整改")
        await expect(detail).to_contain_text("已整改待验证")
        await page.screenshot(path=artifacts / "console-7-work-orders.png")

        await page.get_by_test_id("nav-devices").click()
        await page.get_by_test_id("device-id-input").fill(other)
        await page.get_by_test_id("device-open-form").get_by_role("button").click()
        await page.get_by_test_id("device-work-orders").click()
        await expect(page.get_by_test_id("wo-device")).to_have_value(other)
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_contain_text("更换电池")

        await _publish_smoke_alarm(settings, device, temperature_c=30.0)
        await page.get_by_test_id("nav-alarms").click()
        alarm = page.get_by_test_id("alarm-row").filter(has_text=device)
        await alarm.get_by_test_id("detail-button").click()
        await page.get_by_test_id("alarm-work-orders").click()
        await expect(page.get_by_test_id("wo-device")).to_have_value(device)
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_contain_text("消防通道堵塞")

"""The console's linkage offer (CONTRACT §10) in Debian's Chromium against the real service: a unit
whose gas valves are linked in confirm mode, a critical gas leak, the operator presses the one
offered action in the alarm detail and the simulated valve closes. Screenshots in test-artifacts/."""

from __future__ import annotations

from pathlib import Path

import pytest

from miaoxiang.settings import Settings
from simulators.actuators import Actuator
from tests.e2e.test_console import REGION, _log_in, page  # noqa: F401 - the browser page fixture
from tests.integration.test_linkage_e2e import _has, alarm_of, entries, linked, publish, readings
from tests.service import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.integration]


async def test_operator_sends_the_offered_valve_close(
    settings: Settings, page, artifacts: Path  # noqa: F811
) -> None:
    from playwright.async_api import expect

    valve = Actuator("g-console-1", "gas")
    async with linked(settings, [valve]) as svc:
        h = svc.auth()
        unit = {"unit_id": "U-link-1", "name": "南外街道小吃店", "address": "南外街道 9 号", "region": REGION}
        assert (await svc.http.post("/api/v1/units", headers=h, json=unit)).status_code == 201
        assert (await svc.http.put("/api/v1/units/U-link-1/linkage", headers=h,
                                   json={"gas_valve": "confirm"})).status_code == 200
        device = {"device_id": valve.device_id, "kind": "gas", "unit_id": "U-link-1"}
        assert (await svc.http.post("/api/v1/devices", headers=h, json=device)).status_code == 201
        await _log_in(page, svc)
        await publish(settings, "gas", valve.device_id, "alarm", {"gas_lel_pct": 35.0, "valve": "open"})
        alarm = await wait_for(lambda: alarm_of(svc, valve.device_id, "gas_leak"), 15)
        await wait_for(lambda: entries(svc, alarm["alarm_id"], "linkage_offered"), 15)

        row = page.get_by_test_id("alarm-row").filter(has_text=valve.device_id)
        await expect(row).to_be_visible(timeout=5000)
        await row.get_by_test_id("detail-button").click()
        detail = page.get_by_test_id("alarm-detail")
        button = detail.get_by_test_id("linkage-valve_close")
        await expect(button).to_be_visible(timeout=10_000)
        await expect(button).to_contain_text("关闭燃气阀门")
        await expect(detail.get_by_test_id("linkage-valve_open")).to_have_count(0)
        await page.screenshot(path=artifacts / "console-linkage-offer.png")
        await button.click()
        await wait_for(lambda: _has(readings(svc, valve.device_id), "valve_closed"), 15)
        assert [c["cmd"] for c in valve.received] == ["valve_close"]
        await expect(detail.get_by_test_id("linkage-offers")).to_have_count(0, timeout=10_000)
        sent = await entries(svc, alarm["alarm_id"], "linkage_sent")
        assert sent[0]["actor"] != "linkage"  # the operator sent it
        await page.screenshot(path=artifacts / "console-linkage-sent.png")

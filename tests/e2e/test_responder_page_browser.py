"""The responder page in Debian's Chromium at phone size (390x844) against the real service (its
middleware included): the alarm as a responder sees it, 收到 / 到场 (with the phone's position)
/ 反馈 (with a photo) as plain form posts, nothing loaded from elsewhere, no script errors.
Screenshots are kept in test-artifacts/."""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from alerting.model import AlarmType, Decision, Response, Severity
from alerting.response import tokens
from miaoxiang.settings import Settings
from tests.e2e.test_console import CHROMIUM, CHROMIUM_ARGS, REGION
from tests.service import RunningService, running_service

pytestmark = pytest.mark.integration
PHONE = {"width": 390, "height": 844}
UNIT_AT = {"latitude": 25.8301, "longitude": 114.9342}


@pytest.fixture
async def svc(settings: Settings) -> AsyncIterator[RunningService]:
    async with running_service(settings) as running:
        yield running


@pytest.fixture
async def phone() -> AsyncIterator[Any]:
    """A 390x844 Chromium tab that may read its position; fails the test on any script error."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.async_api import async_playwright

    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True,
                                                has_touch=True, geolocation=UNIT_AT, permissions=["geolocation"],
                                                locale="zh-CN")
            tab = await context.new_page()
            tab.on("pageerror", lambda e: errors.append(str(e)))
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            yield tab
        finally:
            await browser.close()
    assert errors == []


async def _alarm_with_link(svc: RunningService) -> tuple[int, str]:
    unit = {"unit_id": "RP1", "name": "南外街道幸福养老院", "address": "章贡区南外街道文清路 88 号", "region": REGION,
            "industry": "elderly_care", "contacts": [{"name": "值班室", "phone": "+867978123456"}],
            "location": {"lat": 25.8292, "lon": 114.9336}}
    assert (await svc.http.post("/api/v1/units", json=unit, headers=svc.auth())).status_code in (200, 201)
    device = {"device_id": "RP-SMK-1", "kind": "smoke", "unit_id": "RP1",
              "location": {"building": "1号楼", "floor": "3F", "room": "302 室"}}
    assert (await svc.http.post("/api/v1/devices", json=device, headers=svc.auth())).status_code in (200, 201)
    services = svc.app.state.services
    now = services.clock()
    await services.alarms.lifecycle.handle([Decision(
        "raise", "device:RP-SMK-1", AlarmType.smoke, Severity.major, Response.immediate, "smoke_heat", now,
        ["RP-SMK-1"], None, [{"device_id": "RP-SMK-1", "ts_ms": now}])])
    pool = services.pool
    alarm_id = await pool.fetchval("SELECT alarm_id FROM alarms WHERE alarm_key = 'device:RP-SMK-1'")
    await pool.execute("INSERT INTO responders (responder_id, name, role, phone) "
                       "VALUES ('gw-li', '李网格', 'grid_worker', '+8613900001111')")
    async with pool.acquire() as conn:
        token = await tokens.issue(conn, alarm_id, responder_id="gw-li")
    assert token is not None
    return alarm_id, token


def _photo() -> bytes:
    im = Image.new("RGB", (320, 240), (180, 60, 40))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    out = io.BytesIO()
    im.save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


async def test_responder_page_on_a_phone(svc: RunningService, phone: Any, artifacts: Path, tmp_path: Path) -> None:
    alarm_id, token = await _alarm_with_link(svc)
    foreign: list[str] = []
    phone.on("request", lambda r: foreign.append(r.url) if not r.url.startswith(svc.base_url) else None)
    answer = await phone.goto(f"{svc.base_url}/r/{token}")
    assert answer is not None and answer.status == 200
    headers = answer.headers
    assert headers["referrer-policy"] == "no-referrer" and headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    await phone.screenshot(path=str(artifacts / "responder_page.png"), full_page=True)
    assert await phone.locator("h1").inner_text() == "烟感报警 Smoke"
    assert await phone.locator("a.tel").get_attribute("href") == "tel:+867978123456"
    body = await phone.locator("body").inner_text()
    assert "南外街道幸福养老院" in body and "1号楼 3F 302 室" in body and "+8613900001111" not in body
    width = await phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"]  # nothing wider than the phone

    await phone.get_by_role("button", name="收到 Ack").click()
    await phone.wait_for_url(f"{svc.base_url}/r/{token}")
    await phone.get_by_text("已收到 ✓ Acknowledged").wait_for()
    await phone.get_by_role("button", name="到场 Arrive").click()
    await phone.get_by_text("已到场 ✓ Arrived").wait_for()
    assert await phone.locator("select[name=classification]").input_value() == ""  # nothing chosen for them
    await phone.select_option("select[name=classification]", "false_alarm")
    await phone.fill("textarea[name=note]", "厨房油烟触发，已通风")
    photo = tmp_path / "scene.jpg"
    photo.write_bytes(_photo())
    await phone.set_input_files("input[name=photo]", str(photo))
    await phone.get_by_role("button", name="提交反馈 Send feedback").click()
    await phone.get_by_text("已反馈 ✓ Feedback sent").wait_for()
    await phone.screenshot(path=str(artifacts / "responder_page_done.png"), full_page=True)
    assert foreign == []

    pool = svc.app.state.services.pool
    rows = {r["action"]: r for r in await pool.fetch(
        "SELECT action, lat, lon, classification, note, photo FROM responder_actions WHERE alarm_id = $1", alarm_id)}
    assert set(rows) == {"ack", "arrive", "feedback"}
    assert rows["arrive"]["lat"] == pytest.approx(UNIT_AT["latitude"])  # the phone's position, by page.js
    assert rows["feedback"]["classification"] == "false_alarm" and b"PhoneMaker" not in rows["feedback"]["photo"]
    status = await pool.fetchval("SELECT status FROM alarms WHERE alarm_id = $1", alarm_id)
    assert status == "active_unack"  # the page never acknowledges for the operator
    detail = (await svc.http.get(f"/api/v1/alarms/{alarm_id}", headers=svc.auth())).json()
    assert detail["response_times"]["acked_s"] is not None and detail["response_times"]["arrived_s"] is not None

    # the service's body cap for feedback (a 5 MiB photo and the form) answers 413 to more
    big = await svc.http.post(f"/r/{token}/feedback", data={"classification": "fire"},
                              files={"photo": ("big.jpg", b"\xff\xd8" + b"\0" * (6 << 20), "image/jpeg")})
    assert big.status_code == 413

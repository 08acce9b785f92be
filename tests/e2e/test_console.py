"""The operator console: how its files are served, its string dictionary, and (browser) the real
service driven through Debian's Chromium: an MQTT smoke alarm reaches the board, is acknowledged
and resolved in the page; a 秒响应 alarm flashes and sounds."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI

from miaoxiang.console_router import CONSOLE_DIR, console_router
from miaoxiang.settings import Settings
from tests.service import RunningService, running_service

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
ADMIN = "test-admin-token"
REGION = "江西省/赣州市/章贡区/南外街道"


# --- files and strings (no browser) ------------------------------------------------------------
@pytest.fixture
async def console_http() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(console_router())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as http:
        yield http


def _module_graph() -> set[str]:
    """Every file the page loads: index.html's links, then each module's relative imports."""
    html = (CONSOLE_DIR / "index.html").read_text(encoding="utf-8")
    todo = re.findall(r'(?:href|src)="console/([^"]+)"', html)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name.endswith(".js"):
            todo += re.findall(r'from "\./([^"]+)"', (CONSOLE_DIR / name).read_text(encoding="utf-8"))
    return seen


async def test_page_and_every_module_it_loads_are_served(console_http: httpx.AsyncClient) -> None:
    page = await console_http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    files = _module_graph()
    assert {"app.js", "style.css", "api.js", "alarms.js", "sound.js", "chart.js", "i18n.js"} <= files
    for name in files:
        res = await console_http.get(f"/console/{name}")
        assert res.status_code == 200, name
        assert res.headers["content-type"].startswith("text/css" if name.endswith(".css") else "text/javascript"), name
        assert res.content == (CONSOLE_DIR / name).read_bytes()


@pytest.mark.parametrize(
    "path", ["/console/nope.js", "/console/..%2Fconsole_router.py", "/console/%2e%2e%2fsettings.py"]
)
async def test_only_shipped_console_files_are_served(console_http: httpx.AsyncClient, path: str) -> None:
    assert (await console_http.get(path)).status_code == 404


def _dictionary() -> dict[str, tuple[str, str]]:
    source = (CONSOLE_DIR / "i18n.js").read_text(encoding="utf-8")
    return {k: (zh, en) for k, zh, en in re.findall(r'^\s*"([\w.]+)": \["([^"]*)",\s*"([^"]*)"\],$', source, re.M)}


def test_every_string_the_console_uses_has_chinese_and_english() -> None:
    strings = _dictionary()
    assert len(strings) > 150
    used = set(re.findall(r'data-i18n(?:-label)?="([\w.]+)"', (CONSOLE_DIR / "index.html").read_text(encoding="utf-8")))
    for js in CONSOLE_DIR.glob("*.js"):
        used |= set(re.findall(r'\bt\("([\w.]+)"', js.read_text(encoding="utf-8")))
    assert used - strings.keys() == set()
    assert all(zh and en for zh, en in strings.values())
    # every value of the API's enums the console names (CONTRACT §5) has its words; the catalogue's (types,
    # kinds, events, metrics) come from GET /api/v1/meta, tested in tests/unit/test_catalogue.py
    for field, values in {
        "status": "active_unack active_ack cleared_unack cleared_ack resolved",
        "severity": "critical major minor warning",
        "response": "immediate verify none",
        "classification": "fire false_alarm test fault other",
        "devstatus": "online offline alarm fault unknown",
        "risk": "red orange yellow green none",
    }.items():
        assert {f"{field}.{v}" for v in values.split()} <= strings.keys(), field


# --- the real service in a browser ---------------------------------------------------------------
@pytest.fixture
async def page() -> AsyncIterator[object]:
    """A 1280x800 Chromium page; fails the test on any uncaught script error."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.async_api import async_playwright

    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            tab = await browser.new_page(viewport={"width": 1280, "height": 800})
            tab.on("pageerror", lambda e: errors.append(str(e)))
            yield tab
        finally:
            await browser.close()
    assert errors == []


async def _register(svc: RunningService, unit_id: str, device_id: str) -> None:
    unit = {"unit_id": unit_id, "name": f"控制台测试单位 {unit_id}", "address": "南外街道 1 号", "region": REGION}
    assert (await svc.http.post("/api/v1/units", json=unit, headers=svc.auth())).status_code in (200, 201)
    device = {"device_id": device_id, "kind": "smoke", "unit_id": unit_id}
    assert (await svc.http.post("/api/v1/devices", json=device, headers=svc.auth())).status_code in (200, 201)


async def _publish_smoke_alarm(settings: Settings, device_id: str, temperature_c: float) -> None:
    import aiomqtt

    broker = urlsplit(settings.mqtt_url or "")
    report = {"device_id": device_id, "kind": "smoke", "ts": int(time.time() * 1000), "seq": 1, "event": "alarm",
              "data": {"smoke_obscuration_pct_m": 4.2, "temperature_c": temperature_c, "battery_pct": 86,
                       "rsrp_dbm": -97}}
    async with aiomqtt.Client(broker.hostname or "127.0.0.1", broker.port or 1883) as mqtt:
        await mqtt.publish(settings.topic("evt", "smoke", device_id), json.dumps(report), qos=1)


async def _log_in(page, svc: RunningService) -> None:  # page: a Playwright Page
    from playwright.async_api import expect

    await page.goto(svc.base_url + "/")
    await page.get_by_label("访问令牌").fill(ADMIN)
    await page.get_by_test_id("login-submit").click()
    await expect(page.get_by_test_id("role")).to_have_attribute("data-role", "admin")
    await expect(page.get_by_test_id("stream-state")).to_have_attribute("data-state", "live")


@pytest.mark.browser
@pytest.mark.integration
async def test_mqtt_alarm_reaches_the_board_and_is_acknowledged_and_resolved(
    settings: Settings, page, artifacts: Path
) -> None:
    from playwright.async_api import expect

    device = "868120300000001"
    async with running_service(settings) as svc:
        await _register(svc, "U-console-1", device)
        await _log_in(page, svc)
        await page.screenshot(path=artifacts / "console-1-empty-board.png")

        await _publish_smoke_alarm(settings, device, temperature_c=31.5)
        row = page.get_by_test_id("alarm-row").filter(has_text=device)
        await expect(row).to_be_visible(timeout=2000)  # within 2 s of the publish
        alarm_id = await row.get_attribute("data-alarm-id")
        assert alarm_id
        await expect(row).to_have_attribute("data-status", "active_unack")
        await page.screenshot(path=artifacts / "console-2-alarm-on-board.png")

        await row.get_by_test_id("ack-button").click()
        await expect(row).to_have_attribute("data-status", "active_ack")
        alarm = (await svc.http.get(f"/api/v1/alarms/{alarm_id}", headers=svc.auth())).json()
        assert alarm["status"] == "active_ack"
        assert [e["actor"] for e in alarm["timeline"] if e["action"] == "acked"] == ["admin"]

        await row.get_by_test_id("detail-button").click()
        detail = page.get_by_test_id("alarm-detail")
        await expect(detail.get_by_test_id("timeline-evidence").first).to_contain_text(device)
        await expect(detail.get_by_test_id("timeline-event")).to_have_count(len(alarm["timeline"]))
        await page.screenshot(path=artifacts / "console-3-alarm-detail.png")

        await detail.get_by_test_id("resolve-submit").click()  # no classification chosen: nothing is closed
        await expect(detail.get_by_test_id("detail-status")).not_to_have_attribute("data-status", "resolved")
        assert (await svc.http.get(f"/api/v1/alarms/{alarm_id}", headers=svc.auth())).json()["status"] == "active_ack"
        await detail.get_by_label("定性").select_option("false_alarm")
        await detail.get_by_label("备注").fill("烹饪油烟，已电话核实")
        await detail.get_by_test_id("resolve-submit").click()
        await expect(detail.get_by_test_id("detail-status")).to_have_attribute("data-status", "resolved")
        alarm = (await svc.http.get(f"/api/v1/alarms/{alarm_id}", headers=svc.auth())).json()
        assert (alarm["status"], alarm["classification"]) == ("resolved", "false_alarm")
        await expect(row).to_be_hidden()  # the board shows open alarms

        await detail.get_by_role("button", name=device).first.click()
        await expect(page.get_by_test_id("device-heading")).to_have_text(device)
        await expect(page.get_by_test_id("readings-chart")).to_be_visible()
        await page.screenshot(path=artifacts / "console-4-device.png")

        await page.get_by_test_id("lang-toggle").click()
        await expect(page.get_by_test_id("nav-alarms")).to_have_text("Alarms")


@pytest.mark.browser
@pytest.mark.integration
async def test_immediate_alarm_flashes_and_sounds(settings: Settings, page, artifacts: Path) -> None:
    from playwright.async_api import expect

    device = "868120300000002"
    async with running_service(settings) as svc:
        await _register(svc, "U-console-2", device)
        await _log_in(page, svc)
        assert await page.get_by_test_id("sound-toggle").get_attribute("data-beeps") == "0"

        # CONTRACT §8: a smoke alarm whose device reports 57 °C or more needs a response within seconds
        await _publish_smoke_alarm(settings, device, temperature_c=63.0)
        row = page.get_by_test_id("alarm-row").filter(has_text=device)
        await expect(row).to_have_attribute("data-response", "immediate", timeout=5000)
        await expect(row).to_have_class(re.compile(r"\bimmediate\b"))
        banner = page.get_by_test_id("immediate-banner")
        await expect(banner).to_be_visible()
        await expect(page.get_by_test_id("sound-toggle")).not_to_have_attribute("data-beeps", "0")
        await page.screenshot(path=artifacts / "console-5-immediate.png")

        await row.get_by_test_id("ack-button").click()
        await expect(banner).to_be_hidden()


@pytest.mark.browser
@pytest.mark.integration
async def test_a_token_in_the_address_fragment_signs_in_and_is_wiped(settings: Settings, page) -> None:
    """`miaoxiang demo` prints `/#token=...`: the link signs in, and the token leaves the address bar."""
    from playwright.async_api import expect

    async with running_service(settings) as svc:
        await page.goto(f"{svc.base_url}/#token={ADMIN}")
        await expect(page.get_by_test_id("role")).to_have_attribute("data-role", "admin")
        assert ADMIN not in page.url

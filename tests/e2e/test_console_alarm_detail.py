"""The console's alarm detail v2 (issue 19) in Debian's Chromium against the real service: a unit
with contacts and a location, a smoke detector in a room, a unit contact reached by a signed
webhook on a local receiver; the MQTT smoke alarm is told to the contact, who acknowledges through
the link; the operator sees the unit, tap-to-call links, the device's room, the notification and
the responder's 收到, dispatches from the console (confirm dialog) and sees the micro fire station
told. A suppressed panel-component alarm shows its reason and links to its UITD. Desktop
(1440x900) and phone (390x844), no script or console errors; screenshots in test-artifacts/."""

from __future__ import annotations

import io
import re
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from alerting.model import AlarmType, Decision, Response, Severity
from miaoxiang.embedded import free_port
from miaoxiang.settings import Settings
from simulators.responders import links
from simulators.webhook_sink import Delivery, WebhookSink
from tests.e2e.test_console import REGION, _log_in, _publish_smoke_alarm
from tests.service import RunningService, running_service, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.integration]
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
UNIT = {"unit_id": "U-detail-1", "name": "南外街道幸福养老院", "address": "章贡区南外街道文清路 88 号",
        "region": REGION, "industry": "elderly_care", "location": {"lat": 25.8292, "lon": 114.9336},
        "contacts": [{"name": "王主任", "role": "owner", "phone": "+86 138 0000 1234"},
                     {"name": "值班室", "role": "duty_room", "phone": "0797-8123456"}]}
SMOKE = "868120300000091"
UITD = "uitd-889"
COMPONENT = f"{UITD}:1:1:131082"


async def _tab(browser: Any, errors: list[str], **context: Any) -> Any:
    tab = await (await browser.new_context(locale="zh-CN", **context)).new_page()
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return tab


async def _setup(svc: RunningService, sink: WebhookSink, secret: str) -> None:
    admin = svc.auth()
    for path, body in [
        ("/api/v1/units", UNIT),
        ("/api/v1/devices", {"device_id": SMOKE, "kind": "smoke", "unit_id": UNIT["unit_id"],
                             "location": {"building": "1号楼", "floor": "3F", "room": "302 室"}}),
        ("/api/v1/devices", {"device_id": UITD, "kind": "uitd", "unit_id": UNIT["unit_id"],
                             "location": {"building": "1号楼", "floor": "1F", "room": "消防控制室"}}),
        *[("/api/v1/channels", {"name": f"hook-{who}", "type": "webhook",
                                "config": {"url": f"{sink.url}/hook/{who}", "secret": secret}})
          for who in ("uc", "ms")],
        ("/api/v1/responders", {"responder_id": "uc-wang", "name": "王主任", "role": "unit_contact",
                                "channels": ["hook-uc"], "unit_ids": [UNIT["unit_id"]], "phone": "+8613800001234"}),
        ("/api/v1/responders", {"responder_id": "ms-nanwai", "name": "南外微型消防站", "role": "micro_station",
                                "channels": ["hook-ms"], "regions": [REGION],
                                "location": {"lat": 25.8301, "lon": 114.9342}}),
    ]:
        answer = await svc.http.post(path, json=body, headers=admin)
        assert answer.status_code in (200, 201), (path, answer.text)


async def _suppressed_component_alarm(svc: RunningService) -> str:
    """A panel fire of a UITD component during a test (rule `suppressed.test`, response none)."""
    services = svc.app.state.services
    now = services.clock()
    await services.alarms.lifecycle.handle([Decision(
        "raise", f"device:{COMPONENT}", AlarmType.panel_fire, Severity.critical, Response.none, "suppressed.test", now,
        [COMPONENT], str(UNIT["unit_id"]), [{"device_id": COMPONENT, "ts_ms": now, "event": "test", "row": 0}])])
    alarm_id = await services.pool.fetchval("SELECT alarm_id FROM alarms WHERE alarm_key = $1", f"device:{COMPONENT}")
    return str(alarm_id)


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 240), (200, 80, 40)).save(out, "PNG")
    return out.getvalue()


async def _open(tab: Any, alarm_id: str) -> Any:
    from playwright.async_api import expect

    row = tab.locator(f"[data-testid='alarm-row'][data-alarm-id='{alarm_id}']")  # both alarms are open
    await row.locator("td").first.click()
    detail = tab.get_by_test_id("alarm-detail")
    await expect(detail.get_by_role("heading", level=2)).to_contain_text(f"#{alarm_id}")
    return detail


async def _told(deliveries: list[Delivery], path: str) -> str:
    """The responder link of the first webhook message delivered to `path`."""
    told = await wait_for(lambda: [d for d in deliveries if d.path == path and links(d.body)], timeout=20)
    return links(told[0].body)[0]


async def _check_where_and_who(detail: Any) -> None:
    """The unit, its contacts, the device's room, the contact's notification and 收到, the evidence."""
    from playwright.async_api import expect

    await expect(detail.get_by_test_id("unit-name")).to_have_text(UNIT["name"])
    await expect(detail.get_by_test_id("alarm-unit")).to_contain_text("养老机构")  # industry in words
    await expect(detail.get_by_test_id("risk-badge")).to_be_visible()
    tel = detail.get_by_test_id("contact-tel")
    await expect(tel).to_have_count(2)
    assert await tel.nth(0).get_attribute("href") == "tel:+8613800001234"
    assert await tel.nth(1).get_attribute("href") == "tel:07978123456"
    await expect(tel.nth(0)).to_contain_text("负责人")  # the contact's role in words
    device = detail.locator(f"[data-testid='alarm-device'][data-device-id='{SMOKE}']")
    await expect(device.get_by_test_id("device-place")).to_have_text("1号楼 · 3F · 302 室")
    await expect(device).to_contain_text("独立烟感")
    note = detail.locator("[data-testid='notification'][data-responder='uc-wang']")
    await expect(note.get_by_test_id("notification-state")).to_have_text("已收到")
    await expect(note).to_contain_text("单位联系人")
    await expect(note).to_contain_text("hook-uc")
    ack = detail.locator("[data-testid='responder-action'][data-action='responder_acked']")
    await expect(ack).to_contain_text("王主任")
    await expect(detail.get_by_test_id("rt-acked_s")).not_to_have_attribute("data-seconds", "")
    await expect(detail.get_by_test_id("timeline-evidence").first).to_contain_text("烟雾浓度 4.2 %/m")
    text = await detail.inner_text()
    assert "ts_ms" not in text and "smoke.single" not in text


async def _dispatch(tab: Any, detail: Any, artifacts: Path) -> None:
    """Dispatch through the confirmation dialog; the station is told and the button explains itself."""
    from playwright.async_api import expect

    await detail.get_by_test_id("dispatch-button").click()
    dialog = tab.get_by_test_id("dispatch-dialog")
    await expect(dialog).to_be_visible()
    await tab.keyboard.press("Escape")  # closes the dialog only: nothing sent, the detail stays
    await expect(dialog).to_be_hidden()
    await expect(detail).to_be_visible()
    assert (await detail.get_by_test_id("dispatched-badge").count()) == 0
    await detail.get_by_test_id("dispatch-button").click()
    await tab.screenshot(path=artifacts / "alarm-detail-desktop-dispatch-dialog.png")
    await dialog.get_by_test_id("dispatch-note").fill("电话核实确有烟雾")
    await dialog.get_by_test_id("dispatch-confirm").click()
    await expect(detail.get_by_test_id("dispatched-badge")).to_be_visible()
    await expect(detail.get_by_test_id("dispatch-button")).to_be_disabled()
    await expect(detail.get_by_test_id("dispatch-why")).to_contain_text("已于")
    entry = detail.locator("[data-testid='timeline-event'][data-action='dispatched']")
    await expect(entry).to_contain_text("电话核实确有烟雾")
    station = detail.locator("[data-testid='notification'][data-responder='ms-nanwai']")
    await expect(station).to_contain_text("调派", timeout=15000)  # the notifier's send, re-read while open
    await expect(station.get_by_test_id("notification-state")).to_have_text("已送达", timeout=15000)


async def _station_reports(link: str, detail: Any) -> None:
    """The station arrives (its phone's position) and reports with a photo: both appear as they happen."""
    from playwright.async_api import expect

    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(f"{link}/arrive", json={"lat": 25.82931, "lon": 114.93372})
        assert answer.status_code == 204, answer.text
        answer = await http.post(f"{link}/feedback", data={"classification": "fire", "note": "三楼302冒烟，已扑灭"},
                                 files={"photo": ("scene.png", _png(), "image/png")})
        assert answer.status_code == 204, answer.text
    arrived = detail.locator("[data-testid='responder-action'][data-action='arrived']")
    await expect(arrived.get_by_test_id("arrive-position")).to_contain_text("25.82931, 114.93372")
    feedback = detail.locator("[data-testid='responder-action'][data-action='feedback']")
    await expect(feedback).to_contain_text("三楼302冒烟，已扑灭")
    await expect(feedback).to_contain_text("真实火警")
    photo = feedback.get_by_test_id("feedback-photo").locator("img")
    await expect(photo).to_have_attribute("src", re.compile("^data:image/png;base64,"))
    await expect(detail.get_by_test_id("rt-arrived_s")).not_to_have_attribute("data-seconds", "")


async def _check_suppressed_component(tab: Any, svc: RunningService, artifacts: Path) -> None:
    """A suppressed panel-component alarm: its reason, its place, and a link to its UITD."""
    from playwright.async_api import expect

    detail = await _open(tab, await _suppressed_component_alarm(svc))
    await expect(detail.get_by_test_id("suppressed")).to_contain_text("设备自检/测试")
    component = detail.locator(f"[data-testid='alarm-device'][data-device-id='{COMPONENT}']")
    await expect(component.get_by_test_id("device-component")).to_contain_text("10区2号")
    await expect(component.get_by_test_id("device-place")).to_contain_text("1号楼 · 1F · 消防控制室")
    await tab.screenshot(path=artifacts / "alarm-detail-desktop-suppressed.png")
    await component.get_by_test_id("device-link").click()
    await expect(tab.get_by_test_id("device-heading")).to_have_text(UITD)


async def _check_phone(phone: Any, svc: RunningService, settings: Settings, alarm_id: str, artifacts: Path) -> None:
    """One column no wider than the phone; the dispatch button stays in the lower half, however far
    the detail is scrolled."""
    from playwright.async_api import expect

    await _log_in(phone, svc)
    detail = await _open(phone, alarm_id)
    await expect(detail.get_by_test_id("unit-name")).to_have_text(UNIT["name"])
    assert await phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for shot in ("alarm-detail-phone.png", "alarm-detail-phone-end.png"):
        box = await detail.get_by_test_id("dispatch-button").bounding_box()
        assert box is not None and PHONE["height"] / 2 < box["y"] and box["y"] + box["height"] <= PHONE["height"]
        await phone.screenshot(path=artifacts / shot)
        await detail.evaluate("el => el.scrollTo(0, el.scrollHeight)")

    # a hot reading makes it 秒响应: the banner shows above the open detail, which starts below it
    await _publish_smoke_alarm(settings, SMOKE, temperature_c=63.0)
    banner = phone.get_by_test_id("immediate-banner")
    await expect(banner).to_be_visible(timeout=5000)
    await detail.evaluate("el => el.scrollTo(0, 0)")
    await phone.screenshot(path=artifacts / "alarm-detail-phone-immediate.png")
    banner_box, pane_box = await banner.bounding_box(), await detail.bounding_box()
    assert banner_box is not None and pane_box is not None
    assert banner_box["y"] + banner_box["height"] <= pane_box["y"] + 1
    await expect(detail.get_by_test_id("detail-close")).to_be_visible()
    upgraded = detail.locator("[data-testid='timeline-event'][data-action='upgraded']")
    await expect(upgraded).to_contain_text("响应：待核实 → 秒响应")  # a change in words, not `0: — → g`


async def _check_viewer(tab: Any, svc: RunningService, alarm_id: str) -> None:
    """A viewer token: the contacts without numbers (and the reason), no dispatch or resolve."""
    from playwright.async_api import expect

    answer = await svc.http.post("/api/v1/tokens", json={"name": "night-viewer", "role": "viewer"}, headers=svc.auth())
    assert answer.status_code == 201, answer.text
    await tab.goto(svc.base_url + "/")
    await tab.get_by_label("访问令牌").fill(answer.json()["token"])
    await tab.get_by_test_id("login-submit").click()
    await expect(tab.get_by_test_id("role")).to_have_attribute("data-role", "viewer")
    detail = await _open(tab, alarm_id)
    await expect(detail.get_by_test_id("unit-contacts")).to_contain_text("电话仅值班员可见")
    await expect(detail.get_by_test_id("contact-tel")).to_have_count(0)
    await expect(detail.get_by_test_id("dispatch-button")).to_have_count(0)
    await expect(detail.get_by_test_id("resolve-form")).to_have_count(0)
    assert "+8613800001234" not in await detail.inner_text()


async def test_alarm_detail_shows_the_response_loop_and_dispatches(
    settings: Settings, browser: Any, artifacts: Path
) -> None:
    from playwright.async_api import expect

    port = free_port()
    settings = settings.model_copy(update={"http_port": port, "public_url": f"http://127.0.0.1:{port}"})
    secret = secrets.token_hex(16)
    deliveries: list[Delivery] = []
    errors: list[str] = []
    async with running_service(settings) as svc, WebhookSink(secret, deliveries.append) as sink:
        await _setup(svc, sink, secret)
        await _publish_smoke_alarm(settings, SMOKE, temperature_c=31.5)
        link = await _told(deliveries, "/hook/uc")
        assert link.startswith(f"http://127.0.0.1:{port}/r/")
        async with httpx.AsyncClient(timeout=10) as contact:  # the contact opens the link and taps 收到
            assert (await contact.get(link)).status_code == 200
            assert (await contact.post(f"{link}/ack", json={})).status_code == 204
        alarm_id = str(await svc.app.state.services.pool.fetchval(
            "SELECT alarm_id FROM alarms WHERE alarm_key = $1", f"device:{SMOKE}"))

        tab = await _tab(browser, errors, viewport=DESKTOP)
        await _log_in(tab, svc)
        detail = await _open(tab, alarm_id)
        await _check_where_and_who(detail)
        await tab.screenshot(path=artifacts / "alarm-detail-desktop-before-dispatch.png")
        await _dispatch(tab, detail, artifacts)
        alarm = (await svc.http.get(f"/api/v1/alarms/{alarm_id}", headers=svc.auth())).json()
        assert alarm["dispatched_at"] is not None
        await _station_reports(await _told(deliveries, "/hook/ms"), detail)
        await detail.get_by_test_id("responder-actions").scroll_into_view_if_needed()
        await tab.screenshot(path=artifacts / "alarm-detail-desktop-responders.png")
        await detail.evaluate("el => el.scrollTo(0, el.scrollHeight)")
        await tab.screenshot(path=artifacts / "alarm-detail-desktop-end.png")
        await tab.get_by_test_id("lang-toggle").click()
        await expect(detail.get_by_test_id("dispatch-why")).to_contain_text("Already dispatched")
        note = detail.locator("[data-testid='notification'][data-responder='uc-wang']")
        await expect(note.get_by_test_id("notification-state")).to_have_text("acknowledged")
        await detail.evaluate("el => el.scrollTo(0, 0)")
        await tab.screenshot(path=artifacts / "alarm-detail-desktop-en.png")
        await tab.get_by_test_id("lang-toggle").click()
        await _check_suppressed_component(tab, svc, artifacts)

        phone = await _tab(browser, errors, viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
        await _check_phone(phone, svc, settings, alarm_id, artifacts)
        probes: list[str] = []  # a viewer's login finds its role from two routes that answer it 403
        viewer = await _tab(browser, probes, viewport=DESKTOP)
        await _check_viewer(viewer, svc, alarm_id)
        errors += [e for e in probes if "status of 403" not in e]
        for page in (tab, phone, viewer):  # before the service stops: its stream would fail to reconnect
            await page.context.close()
    assert errors == []

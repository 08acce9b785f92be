"""The console's map and floor plans (issue 19) in Debian's Chromium against the real service.

Map: units with coordinates drawn in their four risk colours (set by admin overrides), one with a
live MQTT smoke alarm blinking, a unit without coordinates counted apart; a click lists the unit's
open alarms and opens the alarm detail. Without a tile setting the page asks nothing of any other
host; with a GCJ-02 tile source (served here by route interception) tiles are fetched from it
alone and the WGS-84 -> GCJ-02 shift matches the published reference. Floor plans: an operator
uploads a PNG for a floor, drags a detector onto it and moves it (positions checked through the
API); the detector's alarm shows that plan with the detector blinking. 1440x900 and 390x844, no
script or console errors; screenshots in test-artifacts/."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from PIL import Image, ImageDraw

from miaoxiang.settings import Settings
from tests.e2e.test_console import ADMIN, REGION, _publish_smoke_alarm
from tests.service import RunningService, running_service, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.integration]
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
#: (unit_id, name, colour, (lat, lon) WGS-84 around 赣州 or None)
UNITS = [
    ("U-map-red", "南外农贸市场", "red", (25.8292, 114.9336)),
    ("U-map-orange", "文清路幼儿园", "orange", (25.8401, 114.9402)),
    ("U-map-yellow", "赣江宾馆", "yellow", (25.8188, 114.9211)),
    ("U-map-green", "章江社区服务中心", "green", (25.8350, 114.9105)),
    ("U-map-nowhere", "无坐标仓库", "green", None),
]
SMOKE = "868120300000555"
OTHER = "868120300000556"
TILES = "https://webrd0{s}.tiles.test/appmaptile?x={x}&y={y}&z={z}&key={key}"


async def _tab(browser: Any, errors: list[str], requests: list[str], **context: Any) -> Any:
    tab = await (await browser.new_context(locale="zh-CN", **context)).new_page()
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("request", lambda r: requests.append(r.url))
    return tab


async def _log_in(tab: Any, svc: RunningService, token: str = ADMIN) -> None:
    from playwright.async_api import expect

    await tab.goto(svc.base_url + "/")
    await tab.get_by_label("访问令牌").fill(token)
    await tab.get_by_test_id("login-submit").click()
    await expect(tab.get_by_test_id("stream-state")).to_have_attribute("data-state", "live")


async def _seed(svc: RunningService) -> None:
    admin = svc.auth()
    until = (datetime.now(UTC) + timedelta(days=7)).isoformat()
    for unit_id, name, colour, point in UNITS:
        unit: dict[str, Any] = {"unit_id": unit_id, "name": name, "address": f"章贡区 {name}", "region": REGION}
        if point:
            unit["location"] = {"lat": point[0], "lon": point[1], "text": name}
        assert (await svc.http.post("/api/v1/units", json=unit, headers=admin)).status_code == 201
        r = await svc.http.put(f"/api/v1/units/{unit_id}/risk-override", headers=admin,
                               json={"colour": colour, "reason": "地图测试", "until": until})
        assert r.status_code == 200, r.text
    for device_id, room in ((SMOKE, "302 室"), (OTHER, "305 室")):
        r = await svc.http.post("/api/v1/devices", headers=admin, json={
            "device_id": device_id, "kind": "smoke", "unit_id": "U-map-red",
            "location": {"building": "1号楼", "floor": "3F", "room": room}})
        assert r.status_code == 201, r.text


async def _alarm_id(svc: RunningService) -> str:
    async def found() -> str | None:
        items = (await svc.http.get("/api/v1/alarms", params={"device_id": SMOKE}, headers=svc.auth())).json()["items"]
        return str(items[0]["alarm_id"]) if items else None

    return await wait_for(found, timeout=15)


def _no_sideways_scroll(width: int) -> str:
    return f"document.scrollingElement.scrollWidth <= {width}"


async def _check_map(tab: Any, alarm_id: str, *, keyboard: bool = False) -> None:
    from playwright.async_api import expect

    await tab.get_by_test_id("nav-map").click()
    dots = tab.locator("[data-testid='map-unit']")
    await expect(dots).to_have_count(4)
    colours = {await d.get_attribute("data-unit-id"): await d.get_attribute("data-colour") for d in await dots.all()}
    assert colours == {u: c for u, _, c, p in UNITS if p}
    burning = tab.locator("[data-testid='map-unit'].on-fire")
    await expect(burning).to_have_count(1)
    assert await burning.get_attribute("data-unit-id") == "U-map-red"
    assert await burning.evaluate("e => getComputedStyle(e).animationName") in ("map-blink", "none")
    await expect(tab.get_by_test_id("map-counts")).to_contain_text("地图上 4 个单位，1 个火警中")
    await expect(tab.get_by_test_id("map-counts")).to_contain_text("1 个单位没有坐标")
    await expect(tab.get_by_test_id("map-legend")).to_contain_text("红")
    if keyboard:
        await burning.focus()
        await tab.keyboard.press("Enter")
    else:
        await burning.click()
    pane = tab.get_by_test_id("map-pane")
    await expect(pane).to_contain_text("南外农贸市场")
    alarm = pane.locator(f"[data-testid='map-alarm'][data-alarm-id='{alarm_id}']")
    await expect(alarm).to_contain_text("烟感")


async def test_map_without_tiles_draws_units_and_fires_and_asks_no_other_host(
    settings: Settings, browser: Any, artifacts: Path
) -> None:
    from playwright.async_api import expect

    async with running_service(settings) as svc:
        await _seed(svc)
        await _publish_smoke_alarm(settings, SMOKE, 30.0)
        alarm_id = await _alarm_id(svc)
        own = urlsplit(svc.base_url).netloc
        for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            errors: list[str] = []
            requests: list[str] = []
            tab = await _tab(browser, errors, requests, viewport=viewport)
            await _log_in(tab, svc)
            await _check_map(tab, alarm_id, keyboard=name == "phone")
            assert await tab.get_by_test_id("map").get_attribute("data-tiles") == "none"
            await expect(tab.get_by_test_id("map")).to_contain_text("未配置底图")
            await tab.screenshot(path=artifacts / f"map-{name}-no-tiles.png")
            if name == "phone":
                assert await tab.evaluate(_no_sideways_scroll(PHONE["width"]))
            # the unit's alarm opens the alarm detail
            await tab.get_by_test_id("map-pane").locator(f"[data-alarm-id='{alarm_id}']").click()
            detail = tab.get_by_test_id("alarm-detail")
            await expect(detail.get_by_role("heading", level=2)).to_contain_text(f"#{alarm_id}")
            await expect(tab.get_by_test_id("nav-alarms")).to_have_attribute("aria-current", "page")
            foreign = [u for u in requests if not u.startswith("data:") and urlsplit(u).netloc != own]
            assert foreign == [], foreign
            assert errors == [], errors
            await tab.context.close()


async def test_map_with_a_gcj02_tile_source_fetches_only_its_tiles(
    settings: Settings, browser: Any, artifacts: Path
) -> None:
    from playwright.async_api import expect

    tiled = settings.model_copy(update={"map_tiles": TILES, "map_tiles_key": "k123", "map_tiles_subdomains": "1234",
                                        "map_tiles_coords": "gcj02", "map_tiles_attribution": "© 高德地图 (test)"})
    tile = io.BytesIO()
    Image.new("RGB", (256, 256), (226, 232, 220)).save(tile, "PNG")
    async with running_service(tiled) as svc:
        await _seed(svc)
        csp = (await svc.http.get("/")).headers["content-security-policy"]
        assert "https://webrd01.tiles.test" in csp and "https://webrd04.tiles.test" in csp
        errors: list[str] = []
        requests: list[str] = []
        tab = await _tab(browser, errors, requests, viewport=DESKTOP)
        served: list[str] = []

        async def fulfil(route: Any) -> None:
            served.append(route.request.url)
            await route.fulfill(status=200, content_type="image/png", body=tile.getvalue())

        await tab.context.route("https://*.tiles.test/**", fulfil)
        await _log_in(tab, svc)
        await tab.get_by_test_id("nav-map").click()
        await expect(tab.locator("[data-testid='map-unit']")).to_have_count(4)
        assert await tab.get_by_test_id("map").get_attribute("data-tiles") == "gcj02"
        await expect(tab.locator(".leaflet-tile-loaded").first).to_be_attached()
        assert served and all("key=k123" in u for u in served)
        await expect(tab.get_by_test_id("map")).to_contain_text("高德地图 (test)")
        own = urlsplit(svc.base_url).netloc
        assert {urlsplit(u).netloc for u in requests if not u.startswith("data:")} - {own} <= {
            f"webrd0{s}.tiles.test" for s in "1234"}
        shifted = await tab.evaluate("import('./console/gcj02.js').then(m => [m.wgs84ToGcj02(39.915, 116.404), "
                                     "m.wgs84ToGcj02(48.85, 2.35)])")
        assert shifted[0] == pytest.approx([39.91640428, 116.41024450], abs=1e-7)  # the published reference
        assert shifted[1] == [48.85, 2.35]  # outside China: unchanged
        await tab.screenshot(path=artifacts / "map-desktop-gcj02-tiles.png")
        # a fire raised while the map is open starts blinking without a reload
        await expect(tab.locator("[data-testid='map-unit'].on-fire")).to_have_count(0)
        await _publish_smoke_alarm(tiled, SMOKE, 30.0)
        await expect(tab.locator("[data-testid='map-unit'].on-fire[data-unit-id='U-map-red']")).to_have_count(
            1, timeout=15000)
        assert errors == [], errors


def _plan_png() -> bytes:
    """A 600x400 plan: two rooms and a corridor, drawn with labels-free lines."""
    img = Image.new("RGB", (600, 400), (250, 250, 246))
    draw = ImageDraw.Draw(img)
    draw.rectangle((20, 20, 580, 380), outline=(40, 40, 40), width=4)
    draw.line((300, 20, 300, 260), fill=(40, 40, 40), width=3)
    draw.line((20, 260, 580, 260), fill=(40, 40, 40), width=3)
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


async def _drag_to(source: Any, target: Any, fx: float, fy: float) -> None:
    """Drag with the mouse (pointer events) to fractions (fx, fy) of `target`, scrolling as needed."""
    box = await target.bounding_box()
    await source.drag_to(target, target_position={"x": box["width"] * fx, "y": box["height"] * fy})


async def _positions(svc: RunningService) -> dict[str, tuple[float, float]]:
    plans = (await svc.http.get("/api/v1/units/U-map-red/floorplans", headers=svc.auth())).json()["items"]
    return {p["device_id"]: (p["x"], p["y"]) for plan in plans for p in plan["positions"]}


async def test_floor_plan_upload_drag_and_the_alarm_on_it(
    settings: Settings, browser: Any, artifacts: Path, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    async with running_service(settings) as svc:
        await _seed(svc)
        token = (await svc.http.post("/api/v1/tokens", headers=svc.auth(),
                                     json={"name": "值班员甲", "role": "operator"})).json()["token"]
        plan_file = tmp_path / "3F.png"
        plan_file.write_bytes(_plan_png())
        errors: list[str] = []
        requests: list[str] = []
        tab = await _tab(browser, errors, requests, viewport=DESKTOP)
        await _log_in(tab, svc, token)
        errors.clear()  # finding an operator's role probes two routes it may not use (403, 404)
        await tab.get_by_test_id("nav-units").click()
        await tab.locator("[data-testid='unit-row'][data-unit-id='U-map-red'] button").click()
        plans = tab.get_by_test_id("floorplans")
        await expect(plans.get_by_test_id("plans-empty")).to_be_visible()
        svg = tmp_path / "plan.svg"
        svg.write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
        await plans.get_by_test_id("plan-floor-input").fill("3F")
        await plans.get_by_test_id("plan-file").set_input_files(str(svg))
        await plans.get_by_test_id("plan-upload-submit").click()
        await expect(tab.get_by_test_id("toast")).to_contain_text("只接受完整的 PNG 或 JPEG 图片")  # the 422's reason
        await expect(plans.get_by_test_id("plans-empty")).to_be_visible()
        errors[:] = [e for e in errors if "422" not in e]  # the refused upload's own console line
        await plans.get_by_test_id("plan-file").set_input_files(str(plan_file))
        await plans.get_by_test_id("plan-upload-submit").click()
        image = plans.locator("[data-testid='plan-stage'] img")
        await expect(image).to_be_visible()
        await expect(plans.locator("[data-testid='plan-floor'][data-floor='3']")).to_have_text("3F")

        chip = plans.locator(f"[data-testid='plan-chip'][data-device-id='{SMOKE}']")
        await _drag_to(chip, image, 0.25, 0.4)
        dot = plans.locator(f"[data-testid='plan-device'][data-device-id='{SMOKE}']")
        await expect(dot).to_be_visible()
        x, y = (await _positions(svc))[SMOKE]
        assert x == pytest.approx(0.25, abs=0.02) and y == pytest.approx(0.4, abs=0.02)
        await _drag_to(plans.locator(f"[data-testid='plan-chip'][data-device-id='{OTHER}']"), image, 0.8, 0.3)
        await expect(plans.locator(f"[data-testid='plan-device'][data-device-id='{OTHER}']")).to_be_visible()
        await _drag_to(dot, image, 0.6, 0.75)  # moved
        await wait_for(lambda: _moved(svc), timeout=5)
        await tab.screenshot(path=artifacts / "floorplan-desktop-unit.png")

        await _publish_smoke_alarm(settings, SMOKE, 30.0)
        alarm_id = await _alarm_id(svc)
        await tab.get_by_test_id("nav-alarms").click()
        await tab.locator(f"[data-testid='alarm-row'][data-alarm-id='{alarm_id}'] td").first.click()
        detail = tab.get_by_test_id("alarm-detail")
        where = detail.get_by_test_id("alarm-plan")
        await expect(where).to_be_visible()
        await expect(where).to_contain_text("位置：3F 平面图")
        blinking = where.locator(f"[data-testid='plan-device'][data-device-id='{SMOKE}']")
        await expect(blinking).to_have_class("plan-dot alarming")
        assert await blinking.evaluate("e => getComputedStyle(e).animationName") == "plan-blink"
        await expect(where.locator(f"[data-testid='plan-device'][data-device-id='{OTHER}']")).to_have_class(
            "plan-dot quiet")
        await expect(detail.locator(f"[data-testid='alarm-device'][data-device-id='{SMOKE}'] [data-testid="
                                    "'device-place']")).to_have_text("1号楼 · 3F · 302 室")
        await where.scroll_into_view_if_needed()
        await tab.screenshot(path=artifacts / "floorplan-desktop-alarm.png")
        await tab.get_by_test_id("lang-toggle").click()
        await expect(where).to_contain_text("Where: plan of 3F")
        await expect(blinking).to_have_attribute("aria-label", f"Alarming device {SMOKE}")
        await tab.screenshot(path=artifacts / "floorplan-desktop-alarm-en.png")
        await tab.get_by_test_id("lang-toggle").click()
        assert errors == [], errors

        phone_errors: list[str] = []
        phone = await _tab(browser, phone_errors, [], viewport=PHONE)
        await _log_in(phone, svc, token)
        phone_errors.clear()
        row = phone.locator(f"[data-testid='alarm-row'][data-alarm-id='{alarm_id}']")
        await row.get_by_test_id("detail-button").click()
        where = phone.get_by_test_id("alarm-detail").get_by_test_id("alarm-plan")
        await expect(where.locator(f"[data-testid='plan-device'][data-device-id='{SMOKE}']")).to_be_visible()
        await where.scroll_into_view_if_needed()
        await phone.screenshot(path=artifacts / "floorplan-phone-alarm.png")
        width = await where.evaluate("e => e.getBoundingClientRect().width")
        assert 0 < width <= PHONE["width"]
        assert await phone.evaluate(_no_sideways_scroll(PHONE["width"]))
        assert phone_errors == [], phone_errors


async def _moved(svc: RunningService) -> bool:
    x, y = (await _positions(svc))[SMOKE]
    return abs(x - 0.6) < 0.02 and abs(y - 0.75) < 0.02

"""The console map's tile source (miaoxiang.map_tiles): settings, the page's CSP, the vendored
map library served from the package."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from miaoxiang.console_router import CONSOLE_DIR, console_router
from miaoxiang.map_tiles import InvalidTiles, TileSource
from miaoxiang.settings import Settings, SettingsError, load_settings

TIANDITU = "https://t{s}.tianditu.gov.cn/DataServer?T=vec_w&x={x}&y={y}&l={z}&tk={key}"


def test_a_tile_template_with_subdomains_names_each_host_and_fills_the_key() -> None:
    tiles = Settings(map_tiles=TIANDITU, map_tiles_key="abc123", map_tiles_subdomains="01",
                     map_tiles_attribution="天地图").tile_source()
    assert tiles is not None
    assert tiles.origins() == ["https://t0.tianditu.gov.cn", "https://t1.tianditu.gov.cn"]
    assert tiles.for_browser() == {"url": TIANDITU.replace("{key}", "abc123"), "attribution": "天地图",
                                   "subdomains": "01", "coords": "wgs84"}
    assert Settings().tile_source() is None


@pytest.mark.parametrize(("url", "says"), [
    ("https://tiles.example/{z}/{x}.png", "lacks {y}"),
    ("ftp://tiles.example/{z}/{x}/{y}.png", "http or https"),
    (TIANDITU, "MIAOXIANG_MAP_TILES_KEY"),
])
def test_unusable_tile_templates_are_refused_at_start(url: str, says: str) -> None:
    with pytest.raises(InvalidTiles, match=says):
        TileSource.parse(url)
    with pytest.raises(SettingsError, match=says):
        load_settings(map_tiles=url)


async def _get(router_tiles: TileSource | None, path: str) -> httpx.Response:
    app = FastAPI()
    app.include_router(console_router(tiles=router_tiles))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as http:
        return await http.get(path)


async def test_the_page_may_load_images_only_from_the_configured_tile_hosts() -> None:
    plain = (await _get(None, "/")).headers["content-security-policy"]
    assert "img-src 'self' data:;" in plain
    osm = TileSource.parse("https://{s}.tile.openstreetmap.org/{z}/{x}/{y}.png", attribution="© OpenStreetMap")
    csp = (await _get(osm, "/")).headers["content-security-policy"]
    assert "img-src 'self' data: https://a.tile.openstreetmap.org https://b.tile.openstreetmap.org " \
           "https://c.tile.openstreetmap.org;" in csp
    assert "connect-src 'self';" in csp


@pytest.mark.parametrize("name", ["vendor/leaflet/leaflet-src.esm.js", "vendor/leaflet/leaflet.css",
                                  "vendor/leaflet/images/layers.png"])
async def test_the_vendored_map_library_is_served_from_the_package(name: str) -> None:
    res = await _get(None, f"/console/{name}")
    assert res.status_code == 200 and res.content == (CONSOLE_DIR / name).read_bytes()
    assert res.headers["content-type"].split(";")[0] == {"js": "text/javascript", "css": "text/css",
                                                         "png": "image/png"}[name.rsplit(".", 1)[1]]
    assert (await _get(None, "/console/vendor/leaflet/LICENSE")).status_code == 404
    assert (await _get(None, "/console/vendor/../console_router.py")).status_code == 404

"""The operator console: one static page at `/` and its assets under `/console/...`.

The files need no authentication (they hold no data); the page asks for an API token and
sends it with every `/api/v1` call. Only files shipped in `console/` (and the vendored map
library under `console/vendor/`) are served, by name, so no request path ever reaches the file
system. `GET /api/v1/console/map` tells a logged-in page the map's tile source (docs/map.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from devices.auth import Viewer
from miaoxiang.map_tiles import TileSource
from miaoxiang.security_headers import console_csp, html_headers

CONSOLE_DIR = Path(__file__).resolve().parent / "console"

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
}


def _assets(directory: Path) -> dict[str, Path]:
    """Servable files by their path under `directory` (`app.js`, `vendor/leaflet/leaflet.css`)."""
    return {p.relative_to(directory).as_posix(): p for p in directory.rglob("*")
            if p.is_file() and p.suffix in _MEDIA_TYPES}


def console_router(directory: Path = CONSOLE_DIR, tiles: TileSource | None = None) -> APIRouter:
    """A router serving the console page at `/` and its files at `/console/{path}`; with `tiles`,
    the page may load map images from the tile hosts."""
    assets = _assets(directory)
    headers = {
        **html_headers(console_csp(tiles.origins() if tiles else ())),
        # Revalidate every time (cheap with the ETag) so an upgrade never mixes old and new modules.
        "Cache-Control": "no-cache",
    }
    router = APIRouter(include_in_schema=False)

    def file(path: Path) -> FileResponse:
        return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=headers)

    @router.get("/")
    async def console_page() -> FileResponse:
        return file(assets["index.html"])

    @router.get("/console/{name:path}")
    async def console_asset(name: str) -> FileResponse:
        path = assets.get(name)
        if path is None:
            raise HTTPException(404, "no such console file")
        return file(path)

    @router.get("/api/v1/console/map")
    async def map_settings(principal: Viewer) -> dict[str, Any]:
        """The tile source of the map (null: a plain background, no tile requests)."""
        return {"tiles": tiles.for_browser() if tiles else None}

    return router

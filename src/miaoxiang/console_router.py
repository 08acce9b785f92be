"""The operator console: one static page at `/` and its assets under `/console/...`.

The files need no authentication (they hold no data); the page asks for an API token and
sends it with every `/api/v1` call. Only files shipped in `console/` are served, by name,
so no request path ever reaches the file system.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from miaoxiang.security_headers import CONSOLE_CSP, html_headers

CONSOLE_DIR = Path(__file__).resolve().parent / "console"

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}

_HEADERS = {
    **html_headers(CONSOLE_CSP),
    # Revalidate every time (cheap with the ETag) so an upgrade never mixes old and new modules.
    "Cache-Control": "no-cache",
}


def _assets(directory: Path) -> dict[str, Path]:
    """Servable files by name: the console's html, js and css files."""
    return {p.name: p for p in directory.iterdir() if p.is_file() and p.suffix in _MEDIA_TYPES}


def _file(path: Path) -> FileResponse:
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=_HEADERS)


def console_router(directory: Path = CONSOLE_DIR) -> APIRouter:
    """A router serving the console page at `/` and its files at `/console/{name}`."""
    assets = _assets(directory)
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def console_page() -> FileResponse:
        return _file(assets["index.html"])

    @router.get("/console/{name}")
    async def console_asset(name: str) -> FileResponse:
        path = assets.get(name)
        if path is None:
            raise HTTPException(404, "no such console file")
        return _file(path)

    return router

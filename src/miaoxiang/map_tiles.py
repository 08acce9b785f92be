"""The console map's tile source (docs/map.md): a URL template from the settings, or none.

Without one the map draws units and alarms on a plain background and the browser asks no tile
host for anything. With one, the console page's Content-Security-Policy lets images come from
that host (each `{s}` subdomain spelled out) and nowhere else. `coords` says which datum the
tiles are drawn in: `wgs84` (天地图, OpenStreetMap) or `gcj02` (高德 AMap, 腾讯 Tencent); the
service stores WGS-84 and the console shifts points to GCJ-02 for display only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

Coords = Literal["wgs84", "gcj02"]
_PLACEHOLDERS = ("{z}", "{x}", "{y}")


class InvalidTiles(ValueError):
    """The tile template is unusable; the message says why."""


@dataclass(frozen=True, slots=True)
class TileSource:
    url: str
    attribution: str = ""
    key: str = ""
    subdomains: str = "abc"
    coords: Coords = "wgs84"

    @classmethod
    def parse(cls, url: str, *, attribution: str = "", key: str = "", subdomains: str = "abc",
              coords: Coords = "wgs84") -> TileSource:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise InvalidTiles(f"map tiles {url!r}: an http or https URL template is needed")
        if missing := [p for p in _PLACEHOLDERS if p not in url]:
            raise InvalidTiles(f"map tiles {url!r}: the template lacks {', '.join(missing)}")
        if "{key}" in url and not key:
            raise InvalidTiles(f"map tiles {url!r} asks for {{key}}: set MIAOXIANG_MAP_TILES_KEY")
        if "{s}" in url and not subdomains:
            raise InvalidTiles(f"map tiles {url!r} has {{s}}: MIAOXIANG_MAP_TILES_SUBDOMAINS must not be empty")
        return cls(url, attribution, key, subdomains, coords)

    def origins(self) -> list[str]:
        """The origins the browser fetches tiles from (for the page's img-src)."""
        parts = urlsplit(self.url)
        netloc = parts.netloc
        hosts = [netloc.replace("{s}", s) for s in self.subdomains] if "{s}" in netloc else [netloc]
        return [f"{parts.scheme}://{h}" for h in hosts if re.fullmatch(r"[A-Za-z0-9.:\[\]-]+", h)]

    def for_browser(self) -> dict[str, Any]:
        """What the console's map needs: the template with the key filled in, and how to draw it."""
        return {"url": self.url.replace("{key}", self.key), "attribution": self.attribution,
                "subdomains": self.subdomains, "coords": self.coords}

"""Browser hardening headers, from one place: `X-Content-Type-Options: nosniff` on every
response, and on every HTML page a `Content-Security-Policy` (with `frame-ancestors 'none'`)
and `Referrer-Policy` unless the route set its own (the console sets the stricter `CONSOLE`)."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

NOSNIFF = {"X-Content-Type-Options": "nosniff"}
#: The console talks to its own origin only and runs no inline script or style.
CONSOLE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)


def console_csp(img_origins: list[str] | tuple[str, ...] = ()) -> str:
    """`CONSOLE_CSP` letting images also come from `img_origins` (the map's tile hosts, if any)."""
    extra = "".join(f" {origin}" for origin in img_origins)
    return CONSOLE_CSP.replace("img-src 'self' data:", f"img-src 'self' data:{extra}")


#: Any other HTML page is a document (a report with inline style and SVG): nothing loads, nothing runs.
DOCUMENT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)
#: FastAPI's API docs load their scripts from a CDN: they only may not be framed.
API_DOCS_CSP = "frame-ancestors 'none'"
API_DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})


def html_headers(csp: str) -> dict[str, str]:
    """The headers of an HTML page with content security policy `csp`."""
    return {"Content-Security-Policy": csp, **NOSNIFF, "Referrer-Policy": "no-referrer"}


class SecurityHeaders:
    """ASGI middleware adding the headers a response lacks."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = API_DOCS_CSP if scope["path"] in API_DOCS_PATHS else DOCUMENT_CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                wanted = html_headers(csp) if headers.get("content-type", "").startswith("text/html") else NOSNIFF
                for name, value in wanted.items():
                    if name not in headers:
                        headers.append(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)

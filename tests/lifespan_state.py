"""Serve a router-only test app as the service's lifespan would: with `services` in the state of
every request and WebSocket (`request.state.services`), for apps built without `create_app`."""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send


def with_services(app: ASGIApp, services: Any) -> ASGIApp:
    """`app` with `services` (anything providing what its routers' Protocols read) in each scope's state."""

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope["state"] = {**scope.get("state", {}), "services": services}
        await app(scope, receive, send)

    return serve

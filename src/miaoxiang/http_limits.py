"""Limits at the HTTP edge: body size caps per route, a body read deadline, and a deadline
for the request head (uvicorn has none of its own).

`BodyLimits` is an ASGI middleware: a declared `Content-Length` over the route's cap is
answered 413 before anything is read; a body without one (chunked) is counted as it streams
in and refused with 413 as soon as it passes the cap, so a huge body is never held. A body
that has not arrived completely within the deadline is answered 408. `head_timeout_protocol`
wraps uvicorn's HTTP protocol so that a connection whose request head is not complete within
its deadline (a client dribbling header bytes) is answered 408 and closed.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from alerting.response.page import FEEDBACK_MAX_BYTES
from devices.commands import DOWNLINK_PARAMS_BYTES
from devices.floorplans import MAX_BYTES as PLAN_MAX_BYTES
from devices.floorplans_api import PLAN_PATH
from miaoxiang.settings import Settings

#: A command body holds `cmd`, `timeout_s` and params within the largest kind's downlink budget.
COMMAND_MAX_BYTES = 4 * max(DOWNLINK_PARAMS_BYTES.values())


@dataclass(frozen=True, slots=True)
class BodyCap:
    """The largest body a route takes: requests whose method is `method` and path matches `path`."""

    method: str
    path: re.Pattern[str]
    max_bytes: int


def body_caps(settings: Settings) -> list[BodyCap]:
    """The routes with a cap of their own; every other route has `settings.http_max_body_bytes`."""
    return [
        BodyCap("POST", re.compile(r"/api/v1/devices/import"), settings.http_import_max_bytes),
        BodyCap("POST", re.compile(r"/api/v1/units"), settings.http_unit_max_bytes),
        BodyCap("POST", re.compile(r"/api/v1/devices/[^/]+/commands"), COMMAND_MAX_BYTES),
        BodyCap("POST", re.compile(r"/api/v1/ingest/push/[^/]+"), settings.push_max_bytes),
        BodyCap("POST", re.compile(r"/r/[^/]+/feedback"), FEEDBACK_MAX_BYTES),  # a photo up to 5 MiB
        BodyCap("PUT", re.compile(PLAN_PATH), PLAN_MAX_BYTES),  # a floor plan image up to 5 MiB
    ]


class BodyRefused(HTTPException):
    """A request body over its cap (413) or too slow (408, and the connection is closed). After
    a 413 the server discards the rest of the body unread, so the client sees the answer rather
    than a reset connection; the request head deadline bounds how long that may take."""

    def __init__(self, status_code: int, detail: str, *, close: bool = False) -> None:
        super().__init__(status_code, detail, headers={"Connection": "close"} if close else None)


def too_large(max_bytes: int) -> BodyRefused:
    return BodyRefused(413, f"请求体超过 {max_bytes} 字节的上限 / request body over the {max_bytes}-byte limit")


def too_slow(timeout_s: float) -> BodyRefused:
    return BodyRefused(
        408, f"请求体未在 {timeout_s:g} 秒内发送完毕 / request body not complete within {timeout_s:g} s", close=True
    )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class BodyLimits:
    """ASGI middleware enforcing the body caps and the body deadline on every HTTP request."""

    def __init__(self, app: ASGIApp, *, caps: Sequence[BodyCap], default_max: int, timeout_s: float) -> None:
        self.app = app
        self.caps = tuple(caps)
        self.default_max = default_max
        self.timeout_s = timeout_s

    def cap(self, method: str, path: str) -> int:
        for cap in self.caps:
            if cap.method == method and cap.path.fullmatch(path):
                return cap.max_bytes
        return self.default_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.cap(scope["method"], scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _answer(send, too_large(limit))
            return
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        size = 0
        complete = False
        started = False

        async def limited_receive() -> Message:
            nonlocal size, complete
            if complete:  # after the body, receive() waits for the disconnect: no deadline
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise too_slow(self.timeout_s) from None
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit:
                    raise too_large(limit)
                complete = not message.get("more_body", False)
            else:
                complete = True
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyRefused as e:  # raised where no exception handler turned it into the answer
            if started:
                raise
            await _answer(send, e)


async def _answer(send: Send, refused: BodyRefused) -> None:
    body = json.dumps({"detail": refused.detail}, ensure_ascii=False).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(name.lower().encode(), value.encode()) for name, value in (refused.headers or {}).items()]
    await send({"type": "http.response.start", "status": refused.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# --- the request head deadline ---------------------------------------------------------------
_HEAD_TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s"
)


class _HeadDeadline:
    """Mixed into a uvicorn HTTP protocol: from the connection's start, and again after each
    response, the next request head must be complete within `head_timeout_s`; else 408 and close."""

    head_timeout_s: float = 10.0
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    cycle: Any

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        waiting_for = self.cycle  # a head that completes makes a new cycle
        self._head_timer: asyncio.TimerHandle | None = self.loop.call_later(
            self.head_timeout_s, self._head_expired, waiting_for
        )

    def _disarm_head_deadline(self) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
            self._head_timer = None

    def _head_expired(self, waiting_for: Any) -> None:
        self._head_timer = None
        transport = self.transport
        if transport.is_closing() or transport.get_protocol() is not self:  # closed, or a WebSocket now
            return
        if self.cycle is not waiting_for or (waiting_for is not None and not waiting_for.response_complete):
            return  # a head arrived (or a pipelined request is being answered)
        text = f"请求头未在 {self.head_timeout_s:g} 秒内发送完毕 / request head not complete within " \
               f"{self.head_timeout_s:g} s".encode()
        transport.write(_HEAD_TIMEOUT_ANSWER % (len(text), text))
        transport.close()


def head_timeout_protocol(timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools when installed, else h11) with the request head deadline."""
    base: type[asyncio.Protocol]
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        base = HttpToolsProtocol
    except ImportError:  # httptools is optional
        base = H11Protocol
    return type("HeadDeadlineProtocol", (_HeadDeadline, base), {"head_timeout_s": timeout_s})

"""A local receiver of Miaoxiang's signed webhook channel (CONTRACT §9 `webhook`), for the
simulated responders and the notification benchmark.

`WebhookSink(secret, on_delivery)` serves HTTP/1.1 (keep-alive) on 127.0.0.1: every POST whose
`X-Miaoxiang-Signature` is the HMAC-SHA256 of `timestamp + "." + body` and whose timestamp is at
most 5 minutes old is answered 204 and handed to `on_delivery` with its path and the wall time it
was fully received; a bad signature, a stale timestamp or a body that is not a JSON object is
answered 401 or 400 and counted in `refused`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

MAX_AGE_MS = 300_000
MAX_BODY = 1 << 20


@dataclass(frozen=True, slots=True)
class Delivery:
    """One accepted webhook request: `path` (e.g. `/hook/sim-gw-001`), its JSON body, and the
    wall-clock time (epoch seconds) at which its body had been read."""

    path: str
    body: dict[str, Any]
    received_s: float


def signed(secret: str, headers: dict[str, str], body: bytes, now_ms: float) -> bool:
    """Whether the request carries a valid, fresh signature of `body`."""
    timestamp = headers.get("x-miaoxiang-timestamp", "")
    if not timestamp.isdigit() or now_ms - int(timestamp) > MAX_AGE_MS:
        return False
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers.get("x-miaoxiang-signature", ""), f"sha256={mac}")


class WebhookSink:
    """The server; an async context manager. `url` is its base (`http://127.0.0.1:<port>`)."""

    def __init__(self, secret: str, on_delivery: Callable[[Delivery], None], *, host: str = "127.0.0.1",
                 port: int = 0, clock: Callable[[], float] = time.time) -> None:
        self.secret = secret
        self.on_delivery = on_delivery
        self.host, self.port = host, port
        self.clock = clock
        self.accepted = 0
        self.refused = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> WebhookSink:
        self._server = await asyncio.start_server(self._connection, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while await self._request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection is to close."""
        line = await reader.readline()
        if not line:
            return False
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = h.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        if length > MAX_BODY:
            raise ValueError("body too large")
        body = await reader.readexactly(length)
        received = self.clock()
        status = self._judge(method, target.split("?", 1)[0], headers, body, received)
        reason = {204: "No Content", 400: "Bad Request", 401: "Unauthorized", 405: "Method Not Allowed"}[status]
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        return headers.get("connection", "").lower() != "close"

    def _judge(self, method: str, path: str, headers: dict[str, str], body: bytes, received: float) -> int:
        if method != "POST":
            self.refused += 1
            return 405
        if not signed(self.secret, headers, body, received * 1000):
            self.refused += 1
            return 401
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            self.refused += 1
            return 400
        self.accepted += 1
        self.on_delivery(Delivery(path, payload, received))
        return 204

"""Run the service with uvicorn inside the current event loop (CLI, demo, benchmarks, tests)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI

from miaoxiang.app import create_app
from miaoxiang.embedded import free_port
from miaoxiang.http_limits import head_timeout_protocol
from miaoxiang.settings import Settings

#: How long requests in flight may take to finish once shutdown begins; then they are cancelled.
GRACEFUL_SHUTDOWN_S = 5


class _Server(uvicorn.Server):
    """uvicorn, ending the live alarm streams first when it shuts down: its graceful shutdown
    waits for every open connection, and an SSE or WebSocket stream never ends by itself.

    It leaves signals alone: the process that runs it owns them (miaoxiang.shutdown stops the
    service in order). uvicorn's own handlers would replace the loop's for as long as it serves,
    and re-raise each signal once it has stopped, which a loop handler takes for a second one."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.fastapi_app = app

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        services = getattr(self.fastapi_app.state, "services", None)
        if services is not None:
            services.alarms.hub.close()
        await super().shutdown(sockets)


@contextlib.asynccontextmanager
async def serving(
    settings: Settings, *, ready_timeout: float | None = 60, **app_kwargs: Any
) -> AsyncIterator[tuple[FastAPI, str]]:
    """Serve until the context ends; yield (app, base URL) once HTTP answers and MQTT is subscribed
    (within `ready_timeout` seconds; None waits as long as it takes)."""
    port = settings.http_port or free_port()
    app = create_app(settings, **app_kwargs)
    config = uvicorn.Config(
        app, host=settings.http_host, port=port, log_level="warning", lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, http=head_timeout_protocol(settings.http_header_timeout_s),
    )
    server = _Server(config, app)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(ready_timeout):
            while not (server.started and app.state.services.broker_ready):
                if task.done():
                    task.result()
                    raise RuntimeError("the service stopped during start-up")
                if server.started and app.state.services.background_error is not None:
                    failure = app.state.services.background_error
                    raise RuntimeError("a background task failed during start-up") from failure
                await asyncio.sleep(0.02)
        app.state.server_task = task
        yield app, f"http://{settings.http_host}:{port}"
    finally:
        server.should_exit = True
        await task

"""Run the service with uvicorn inside the current event loop (CLI, demo, benchmarks, tests)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI

from miaoxiang.app import create_app
from miaoxiang.embedded import free_port
from miaoxiang.settings import Settings


@contextlib.asynccontextmanager
async def serving(settings: Settings, *, ready_timeout: float = 60, **app_kwargs: Any) -> AsyncIterator[tuple[FastAPI, str]]:
    """Serve until the context ends; yield (app, base URL) once HTTP answers and MQTT is subscribed."""
    port = settings.http_port or free_port()
    app = create_app(settings, **app_kwargs)
    server = uvicorn.Server(
        uvicorn.Config(app, host=settings.http_host, port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(ready_timeout):
            while not (server.started and app.state.mqtt.ready):
                if task.done():
                    task.result()
                    raise RuntimeError("the service stopped during start-up")
                if app.state.background_error is not None:
                    raise RuntimeError("a background task failed during start-up") from app.state.background_error
                await asyncio.sleep(0.02)
        app.state.server_task = task
        yield app, f"http://{settings.http_host}:{port}"
    finally:
        server.should_exit = True
        await task

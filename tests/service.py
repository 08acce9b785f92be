"""Run the real service (uvicorn on a free loopback port) inside a test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from miaoxiang.server import serving
from miaoxiang.settings import Settings


@dataclass
class RunningService:
    app: FastAPI
    base_url: str
    http: httpx.AsyncClient

    def auth(self, token: str = "test-admin-token") -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def running_service(settings: Settings, **app_kwargs: Any) -> AsyncIterator[RunningService]:
    async with serving(settings, **app_kwargs) as (app, base):
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            yield RunningService(app, base, http)


async def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Poll an async or plain predicate until it answers something truthy; fail after `timeout`."""
    async with asyncio.timeout(timeout):
        while True:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(interval)

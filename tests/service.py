"""Run the real service (uvicorn on a free loopback port) inside a test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
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


def _with_db(url: str, db: str) -> str:
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + db
    return base + ("?" + query if query else "")


@contextlib.asynccontextmanager
async def fresh_database(pg_admin_url: str) -> AsyncIterator[str]:
    """The URL of a new, empty database, dropped at the end."""
    name = f"mxtest_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield _with_db(pg_admin_url, name)
    finally:
        admin = await asyncpg.connect(pg_admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def service_settings(database_url: str, mqtt_url: str, topic_prefix: str, data_dir: Path) -> Settings:
    """Settings of a test service on that database and broker prefix, with a private client id."""
    return Settings(
        database_url=database_url,
        mqtt_url=mqtt_url,
        topic_prefix=topic_prefix,
        mqtt_client_id=f"mxtest-{uuid.uuid4().hex[:8]}",
        admin_token="test-admin-token",
        gb26875_port=0,
        http_port=0,
        data_dir=data_dir,
        batch_ms=5,
        outbound_allow=["127.0.0.1"],  # test webhooks listen on loopback (CONTRACT §9)
    )

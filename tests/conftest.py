"""Fixtures: the machine's PostgreSQL (127.0.0.1:5432) and Mosquitto (127.0.0.1:1883) when they
answer, embedded pgserver and amqtt otherwise. Each test gets its own database and topic prefix."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from hypothesis import HealthCheck, settings

from miaoxiang.migrate import migrate
from miaoxiang.settings import DEFAULT_MIGRATIONS_DIR, Settings
from tests.service import fresh_database, service_settings

# Property tests judge behaviour, not speed: on a 2-core machine shared with PostgreSQL and the
# broker, example generation can be slow, and that must not fail a test.
settings.register_profile("shared-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("shared-machine")

PG_HOST_URL = os.environ.get("MIAOXIANG_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
MQTT_HOST, MQTT_PORT = "127.0.0.1", int(os.environ.get("MIAOXIANG_TEST_MQTT_PORT", "1883"))
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def _reachable(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PostgreSQL server URL on which tests may create databases."""
    if _reachable("127.0.0.1", 5432):
        return PG_HOST_URL
    from miaoxiang.embedded import embedded_postgres_url

    return embedded_postgres_url(tmp_path_factory.mktemp("pg"))


@pytest.fixture(scope="session")
def mqtt_url() -> Iterator[str]:
    """The machine's broker, or an embedded amqtt broker on a free port for the session."""
    if _reachable(MQTT_HOST, MQTT_PORT):
        yield f"mqtt://{MQTT_HOST}:{MQTT_PORT}"
        return
    from miaoxiang.embedded import embedded_broker

    loop = asyncio.new_event_loop()
    ctx = embedded_broker()
    url = loop.run_until_complete(ctx.__aenter__())
    import threading

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield url
    loop.call_soon_threadsafe(loop.stop)


@pytest.fixture
async def database_url(pg_admin_url: str) -> AsyncIterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    async with fresh_database(pg_admin_url) as url:
        yield url


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the test's fresh database with the shipped migrations applied."""
    p = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    async with p.acquire() as conn:
        await migrate(conn, DEFAULT_MIGRATIONS_DIR)
    yield p
    await p.close()


@pytest.fixture
def topic_prefix() -> str:
    return f"mxtest/{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(database_url: str, mqtt_url: str, topic_prefix: str, tmp_path: Path) -> Settings:
    """Service settings pointing at this test's database, broker prefix and a private client id."""
    return service_settings(database_url, mqtt_url, topic_prefix, tmp_path)


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS

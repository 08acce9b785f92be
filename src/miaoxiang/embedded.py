"""Embedded PostgreSQL (pgserver) and MQTT broker (amqtt) for machines that have neither."""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def embedded_postgres_url(data_dir: Path) -> str:
    """Start (or reuse) a private PostgreSQL in `data_dir/pg` and answer its URL.

    pgserver shares one server per directory between processes and stops it when the last of
    them lets go (`stop_embedded_postgres`, or at exit), so stopping `miaoxiang demo` leaves
    nothing running; the data stays for the next start (`make clean` removes it).
    """
    import pgserver  # imported here: only machines without a PostgreSQL need it

    pgdata = (data_dir / "pg").resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    log.info("using embedded PostgreSQL in %s", pgdata)
    return str(server.get_uri())


def stop_embedded_postgres() -> int:
    """Let go of every embedded PostgreSQL this process started or joined: pgserver stops a
    server when its last process lets go. Its atexit hook does the same, but a stop must not
    depend on the interpreter reaching atexit. Answers how many were released."""
    pgserver = sys.modules.get("pgserver")
    if pgserver is None:  # never imported: nothing embedded to stop
        return 0
    servers = list(pgserver.PostgresServer._instances.values())  # pgserver has no public registry
    for server in servers:
        server.cleanup()
    return len(servers)


@contextlib.asynccontextmanager
async def embedded_broker(port: int | None = None) -> AsyncIterator[str]:
    """Run an amqtt broker on 127.0.0.1 for the duration of the context; yield its URL."""
    from amqtt.broker import Broker

    port = port or free_port()
    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
    )
    await broker.start()
    log.info("using embedded MQTT broker (amqtt) on 127.0.0.1:%d", port)
    try:
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        await broker.shutdown()

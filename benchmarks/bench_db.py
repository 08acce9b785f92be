"""Databases for benchmarks: a fresh one on the machine's PostgreSQL (`MIAOXIANG_BENCH_PG`,
default 127.0.0.1:5432 as postgres), optionally migrated, dropped afterwards."""

from __future__ import annotations

import os
import uuid

import asyncpg

from miaoxiang.migrate import migrate
from miaoxiang.settings import DEFAULT_MIGRATIONS_DIR

PG = os.environ.get("MIAOXIANG_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


async def fresh_db(*, migrated: bool = True, prefix: str = "mxbench") -> str:
    """A new, empty database (migrated, with readings partitions around the benchmarks' fixed
    device times of 2026-11-22, unless `migrated` is False); answers its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = PG.rsplit("/", 1)[0] + "/" + name
    if migrated:
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn, DEFAULT_MIGRATIONS_DIR)
            await conn.execute("SELECT mx_ensure_readings_partitions('2026-11-20', 10)")
        finally:
            await conn.close()
    return url


async def drop_db(url: str) -> None:
    admin = await asyncpg.connect(PG)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await admin.close()
